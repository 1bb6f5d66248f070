"""One flow spec -> its Dagster assets, asset check, job and schedule."""

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from dagster import AssetExecutionContext

from flow_assets.audit import audit_hooks
from flow_assets.connectors import SOURCE_CONNECTORS, open_source, resource_key
from flow_assets.connectors.base import ReadRequest
from flow_assets.connectors.errors import ConnectorError
from flow_assets.cursor import CURSOR, new_cursor
from flow_assets.destinations.staging import PageStream, StagingArea
from flow_assets.destinations.staging_paths import staging_parts
from flow_assets.partitions import backfill_policy, partitions_def, run_partitions
from flow_assets.pull import deleted_when, flag_deleted, read_fields, read_window
from flow_assets.s3_sensor import new_objects_sensor
from flow_assets.schedules import schedule_for
from flow_assets.sensors import source_changes_sensor
from flow_assets.spec.env import resolve
from flow_assets.spec.errors import FlowFileError, ProblemList, did_you_mean
from flow_assets.spec.loading import field_reference_problems
from flow_assets.spec.models import (
    DESTINATIONS,
    SAAS_WRITES,
    ConnectionSpec,
    Event,
    FlowSpec,
    MaskSpec,
    Schedule,
)
from flow_assets.transforms import REASON, STATUS, Tally, TaskError, annotate, pushable_filters
from flow_assets.transforms.source_masking import (
    check_masks_at_source,
    mask_pages,
    masked_at_source,
    masked_schema,
    raw_masked_fields,
)
from flow_assets.transforms.tasks import REJECT_COLUMNS, REJECTED, rejection_stamp, short_error
from flow_assets.transforms.user_model import apply_model, load_model
from flow_assets.transforms.validation import CheckReport, SchemaCheck, masked_fields, schema_for

ERROR_IO_MANAGER = "error_io_manager"
STAGING_IO_MANAGER = "staging_io_manager"
FULL_REFRESH_TAG = "flowbridge/full_refresh"


def asset_key(flow: FlowSpec | str, name: str) -> dg.AssetKey:
    return dg.AssetKey([flow if isinstance(flow, str) else flow.name, name])


def destination_io_manager(flow: FlowSpec) -> str:
    """The lake's IO manager, or the destination's for its connection (aws, redshift,
    salesforce)."""
    dest = flow.destination
    if dest.settings is not None:
        return f"{dest.connector}_io_manager__{dest.settings.connection}"
    return "lake_io_manager"


def error_location(flow: FlowSpec, table: str) -> dict:
    """Where rejected records go: for an S3 flow, the same bucket under `_errors/<prefix>/`
    (apart from the records, so their readers never meet them), as Parquet, encrypted like
    the records; otherwise the lake's `<table>__rejected`."""
    s3 = flow.destination.s3
    if s3 is not None:
        errors = s3.model_copy(
            update={"prefix": f"_errors/{s3.prefix.strip('/') or flow.name}", "format": "parquet",
                    "glue": None, "file_size_mb": None},
        )  # fmt: skip
        return {
            "io_manager_key": destination_io_manager(flow),
            "metadata": {
                "flowbridge/settings": errors.model_dump_json(),
                "flowbridge/write": "append",
            },
        }
    return {
        "io_manager_key": ERROR_IO_MANAGER,
        "metadata": {"flowbridge/table": f"{table}__rejected", "flowbridge/write": "append"},
    }


def build_flow(
    flow: FlowSpec, file: Path, connections: dict[str, ConnectionSpec]
) -> dg.Definitions:
    """Assets <flow>/extracted, <flow>/records, <flow>/rejected, the schema check, job, schedule."""
    connection = connections[flow.source.connection]
    problems = ProblemList()
    if connection.connector not in SOURCE_CONNECTORS:
        problems.add(
            str(file), "source.connection",
            f"connection '{flow.source.connection}' is a {connection.connector} connection, "
            f"which cannot be a source yet; sources: {', '.join(SOURCE_CONNECTORS)}",
        )  # fmt: skip
    dest = flow.destination
    if dest.connector not in DESTINATIONS:
        problems.add(
            str(file), "destination.connector",
            f"unknown destination '{dest.connector}'{did_you_mean(dest.connector, DESTINATIONS)}"
            f"; known: {', '.join(DESTINATIONS)}",
        )  # fmt: skip
    if dest.settings is not None:
        name = dest.settings.connection
        kind = (
            dest.connector
            if dest.connector == "redshift" or dest.connector in SAAS_WRITES
            else "aws"
        )
        if name not in connections or connections[name].connector != kind:
            fits = [n for n, c in connections.items() if c.connector == kind]
            problems.add(
                str(file), f"destination.{dest.connector}.connection",
                f"'{name}' is not a {kind} connection in connections.yaml{did_you_mean(name, fits)}",
            )  # fmt: skip
    problems.raise_if_any()
    # Audit hooks on the assets, not the job, so runs of the UI's implicit job are recorded too.
    on_success, on_failure = audit_hooks(flow)
    extracted = _extracted_asset(flow, file, connection).with_hooks({on_failure})
    transform = _transform_multi_asset(flow, file, connection).with_hooks({on_success, on_failure})
    job = dg.define_asset_job(
        f"{flow.name}_job",
        selection=dg.AssetSelection.groups(flow.name),
        description=f"Runs flow {flow.name} ({file.name}) end to end.",
        tags={"flowbridge/flow": flow.name},
    )
    schedules = []
    if isinstance(flow.trigger, Schedule):
        schedules.append(schedule_for(flow, file, job))
    sensors = []
    if isinstance(flow.trigger, Event):  # new_objects: an S3 source's arrivals
        build = new_objects_sensor if flow.trigger.event == "new_objects" else source_changes_sensor
        sensors.append(build(flow, file, job))
    return dg.Definitions(
        assets=[extracted, transform], jobs=[job], schedules=schedules, sensors=sensors
    )


def retry_policy(flow: FlowSpec) -> dg.RetryPolicy | None:
    """A failed step is tried again within its run, waiting longer each time; a failure that a
    retry cannot mend (a flow-file mistake) is raised with allow_retries=False."""
    policy = flow.failure_policy
    if not policy.retries:
        return None
    return dg.RetryPolicy(
        max_retries=policy.retries, delay=policy.retry_delay_seconds, backoff=dg.Backoff.EXPONENTIAL
    )


def _tags(flow: FlowSpec, connector: str) -> dict[str, str]:
    # A tag value is at most 63 of A-Z a-z 0-9 _ . - (an S3 source's bucket/prefix has '/').
    value = re.sub(r"[^A-Za-z0-9_.-]", "_", flow.source.object)[:63]
    return {"flowbridge/connector": connector, "flowbridge/object": value}


def _extracted_asset(flow: FlowSpec, file: Path, connection: ConnectionSpec) -> dg.AssetsDefinition:
    conn_key = resource_key(flow.source.connection)
    src = flow.source

    @dg.asset(
        key=asset_key(flow, "extracted"),
        group_name=flow.name,
        description=(
            f"{src.object} records from connection '{src.connection}' ({connection.connector}), "
            f"as a typed Polars frame staged as Parquet. Defined in {file.name}."
        ),
        kinds={connection.connector, "polars", "parquet"},
        tags=_tags(flow, connection.connector),
        owners=flow.owners or None,
        io_manager_key=STAGING_IO_MANAGER,
        required_resource_keys={conn_key},
        partitions_def=partitions_def(flow),
        backfill_policy=backfill_policy(flow),
        retry_policy=retry_policy(flow),
    )
    def extracted(context: AssetExecutionContext) -> PageStream:
        client = open_source(getattr(context.resources, conn_key), src)
        try:
            schema = client.describe(src.object)
            fields = list(src.fields or schema.fields)
            schema.require(fields, where=f"{file}: source.fields")
            deleted_when(flow, schema)  # include_deleted needs a source that keeps deletes
        except ConnectorError as exc:
            raise dg.Failure(f"{file}: source: {exc}") from None
        problems = field_reference_problems(flow, fields, str(file))
        if problems:
            raise dg.Failure(str(FlowFileError(problems)), allow_retries=False)
        salts = _salts(flow, file)
        try:
            check_masks_at_source(flow, schema.polars_schema(fields), salts, str(file))
        except TaskError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None
        pushable = [
            f for f in pushable_filters(flow) if client.can_push_down(f, schema.fields[f.field])
        ]
        full_refresh = context.run.tags.get(FULL_REFRESH_TAG) == "true"
        window = read_window(flow, context, run_partitions(context) is not None, full_refresh)
        request = ReadRequest(
            object=src.object,
            fields=read_fields(flow, fields, schema),
            filters=pushable,
            cursor_field=src.incremental.cursor_field if src.incremental else None,
            cursor_after=window.after,
            cursor_from=window.start,
            cursor_before=window.end,
            start_after=window.after_key,
            page_size=src.page_size,
            include_deleted=src.include_deleted,
        )
        started = time.monotonic()
        context.log.info(
            f"reading {src.object} ({len(fields)} fields, {len(pushable)} filters pushed down"
            f", cursor {window.describe()})"
        )

        def stats() -> dict[str, Any]:
            http = client.http.stats
            return {
                "requests": http.requests,
                "retries": http.retries,
                "reauthentications": http.reauthentications,
                "bytes_received": http.bytes_received,
                "duration_s": round(time.monotonic() - started, 3),
                "cursor_window": window.describe(),
                "filters_pushed_down": len(pushable),
            }

        pages, page_schema = flag_deleted(
            mask_pages(client.read(request), flow, salts),
            masked_schema(schema.polars_schema(request.fields), flow),
            flow, fields, schema,
        )  # fmt: skip
        return PageStream(pages, page_schema, stats, sensitive=raw_masked_fields(flow))

    return extracted


def _transform_multi_asset(
    flow: FlowSpec, file: Path, connection: ConnectionSpec
) -> dg.AssetsDefinition:
    dest = flow.destination
    table = dest.table or flow.name
    records_key, rejected_key = asset_key(flow, "records"), asset_key(flow, "rejected")
    hidden = masked_fields(flow)

    @dg.multi_asset(
        name=f"{flow.name}__transform",
        group_name=flow.name,
        ins={"extracted": dg.AssetIn(key=asset_key(flow, "extracted"))},
        outs={
            "records": dg.AssetOut(
                key=records_key,
                io_manager_key=destination_io_manager(flow),
                description=(
                    f"{flow.description or flow.name}: records after mapping, filters, "
                    f"calculated fields and masking, written to {dest.connector} ({dest.write})."
                ),
                kinds={"polars", "duckdb" if dest.connector == "lake" else dest.connector},
                tags=_tags(flow, connection.connector),
                owners=flow.owners or None,
                metadata={
                    "flowbridge/table": table,
                    "flowbridge/write": dest.write,
                    "flowbridge/key": ",".join(dest.key or []),
                    "flowbridge/flow_file": file.name,
                    **(
                        {"flowbridge/settings": dest.settings.model_dump_json()}
                        if dest.settings
                        else {}
                    ),
                },
            ),
            "rejected": dg.AssetOut(
                key=rejected_key,
                description="Records that failed validation, each with the reason (_fb_reason).",
                kinds={"polars"},
                tags=_tags(flow, connection.connector),
                **error_location(flow, table),
            ),
        },
        check_specs=[
            dg.AssetCheckSpec(
                "schema",
                asset=records_key,
                description="pandera: types, nullability, the flow's validate tasks, unique key.",
            )
        ],
        required_resource_keys={"staging"},
        can_subset=False,
        partitions_def=partitions_def(flow),
        backfill_policy=backfill_policy(flow),
        retry_policy=retry_policy(flow),
    )
    def transform(context: AssetExecutionContext, extracted: pl.LazyFrame):
        staging: StagingArea = context.resources.staging
        partitions = run_partitions(context)  # a partition run stages under its own folder

        def here(name: str) -> tuple[str, ...]:
            return staging_parts((flow.name, name), partitions)

        started = time.monotonic()
        salts = _salts(flow, file)
        at_source = masked_at_source(flow).keys()  # applied while extracting
        model = None
        if flow.validation is not None:
            try:
                model = load_model(flow.validation, file.parent, str(file))
            except TaskError as exc:
                raise dg.Failure(str(exc), allow_retries=False) from None
        key = (dest.key or ["Id"])[0]
        try:
            # Planning on an empty frame names a bad task before any data moves.
            out_schema = annotate(pl.LazyFrame(schema=extracted.collect_schema()), flow, salts,
                                  str(file), skip=at_source).collect_schema()  # fmt: skip
        except TaskError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None
        records_schema = pl.Schema(
            {k: v for k, v in out_schema.items() if k not in (STATUS, REASON)}
        )
        rejected_schema = pl.Schema({**records_schema, REASON: pl.String(), **REJECT_COLUMNS})
        check = SchemaCheck(schema_for(flow, records_schema), hidden, key)
        tally = Tally()
        rejected_at = datetime.now(UTC)
        with (
            staging.writer(records_schema, *here("records")) as records_out,
            staging.writer(rejected_schema, *here("rejected")) as rejected_out,
        ):
            # One pass, one batch in memory at a time: annotate, count, check, route.
            for batch in staging.read_batches(*here("extracted")):
                try:
                    annotated = annotate(
                        batch.lazy(), flow, salts, str(file), skip=at_source
                    ).collect()
                    if model is not None:
                        annotated = apply_model(annotated, model, flow.validation.on_failure)
                except (TaskError, pl.exceptions.PolarsError) as exc:
                    raise dg.Failure(
                        f"{file}: tasks: {short_error(exc)}", allow_retries=False
                    ) from None
                tally.add(annotated, key)
                loaded = annotated.filter(pl.col(STATUS).is_null()).drop(STATUS, REASON)
                check.add(loaded)
                records_out.write_subset(loaded)
                rejected_out.write_subset(
                    annotated.filter(pl.col(STATUS) == REJECTED)
                    .drop(STATUS)
                    .with_columns(rejection_stamp(context.run_id, rejected_at))
                )
        outcome = tally.outcome
        if outcome.failed:
            raise dg.Failure(
                f"{file}: {outcome.failed} records failed a validate task with on_failure: fail "
                f"(e.g. {'; '.join(tally.failed_examples)}); nothing was written and the cursor "
                "did not move",
                metadata=outcome.as_metadata(),
                allow_retries=False,  # a retry reads the same records
            )
        # A partition pulls its own window: the flow's cursor stays where it is.
        cursor = None if partitions else new_cursor(context.instance, flow, extracted)
        yield dg.Output(
            staging.staged(*here("rejected")),
            "rejected",
            metadata={"records_rejected": outcome.rejected, "reasons": _reasons(tally)},
        )
        # Last: the records materialization carries the cursor, so it advances only once the
        # destination has the records (and the rejected ones are in the error location).
        yield dg.Output(
            staging.staged(*here("records")),
            "records",
            metadata={
                **outcome.as_metadata(),
                CURSOR: cursor or "",
                "masked_fields": ", ".join(sorted(hidden)) or "(none)",
                "transform_duration_s": round(time.monotonic() - started, 3),
            },
        )
        yield _check_result(flow, check.report, len(records_schema))

    return transform


def _salts(flow: FlowSpec, file: Path) -> dict[int, str]:
    """The resolved salt (sha256) or key (hmac) of each mask task, by task index."""
    return {
        i: resolve(spec.secret[1], f"{file}: tasks[{i}].mask.{spec.secret[0]}")
        for i, spec in enumerate(flow.task_specs)
        if isinstance(spec, MaskSpec) and spec.secret
    }


def _reasons(tally: Tally) -> dg.MetadataValue:
    rows = sorted(tally.reasons.items(), key=lambda item: -item[1])
    lines = [f"| {status} | {reason} | {n} |" for (status, reason), n in rows]
    return dg.MetadataValue.md("| status | reason | records |\n|---|---|---|\n" + "\n".join(lines))


def _check_result(flow: FlowSpec, report: CheckReport, columns: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="schema",
        asset_key=asset_key(flow, "records"),
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "records_checked": report.records_checked,
            "failures": report.failures,
            "failures_by_check": dg.MetadataValue.json(report.failures_by_check),
            "examples": dg.MetadataValue.json(report.examples),
            "columns": columns,
        },
    )


def invalid_flow_asset(path: Path, error: FlowFileError) -> dg.AssetsDefinition:
    """A stand-in for a flow file that did not load: the UI shows why; materializing fails."""
    message = str(error)

    @dg.asset(
        key=dg.AssetKey(["invalid_flow_files", path.stem.replace("-", "_")]),
        group_name="invalid_flow_files",
        description=f"{path.name} did not load:\n\n{message}",
        kinds={"yaml"},
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in error.problems))},
    )
    def invalid() -> None:
        raise dg.Failure(message)

    return invalid


__all__ = ["asset_key", "build_flow", "invalid_flow_asset"]
