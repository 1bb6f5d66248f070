"""The audit log of flow runs, like AppFlow's execution records: one record per run of a flow.

Records go to the lake's `_flowbridge_runs` table and, for a flow that writes to S3, also to
`_audit/<prefix>/` in the destination bucket (JSON Lines, encrypted like the destination).

They are written by success/failure hooks on the flow's assets, not on its job: Dagster runs an
asset's hooks right after its step, in the run's own process, in every job that executes it:
the flow's job (schedules, sensors, backfills, the launchpad, `flowbridge run`) and the
implicit asset job behind the UI's "Materialize". A run-status sensor needs the daemon and
misses in-process runs; a last step would not run after a failure. The transform step is the
flow's last, so its success hook writes SUCCESS; a failure of either step writes FAILURE (a
failed extract skips the transform, so a run gets one record). A run that only re-extracts
and succeeds loads nothing and leaves no record. Hooks do not fire when a run is executed
with raise_on_error=True (Dagster re-raises first); the CLI, the UI and the daemon never are.

Writing the record never changes a run's outcome or its error: a write that fails is a
warning in the run's event log (and on the console of `flowbridge run`), and the other copy
is still written.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from flow_assets.connectors import resource_key
from flow_assets.destinations.lake import Lake
from flow_assets.destinations.s3 import encryption_args, resolve_kms_key
from flow_assets.spec.models import FlowSpec, S3Settings
from flow_assets.transforms.tasks import without_samples
from flow_assets.transforms.validation import masked_fields

TABLE = "_flowbridge_runs"
TRIGGER_TAG = "flowbridge/trigger"  # set by `flowbridge run`: cli
LAKE_RESOURCE = "lake_io_manager"
COUNTS = ("records_read", "records_filtered", "records_rejected", "records_loaded")
ERROR_LINES, ERROR_CHARS = 5, 1000
# Run tags Dagster sets, and what they say started the run; the value names the starter.
STARTERS = (
    ("dagster/schedule_name", "schedule"),
    ("dagster/sensor_name", "sensor"),
    ("dagster/backfill", "backfill"),
)

SCHEMA = pl.Schema(
    {
        "flow": pl.String(),
        "run_id": pl.String(),
        "job": pl.String(),
        "trigger": pl.String(),  # schedule | sensor | backfill | ui | cli | api
        "started_by": pl.String(),  # the schedule or sensor name, the backfill id; else null
        "user": pl.String(),  # the run's `user` tag (Dagster+ sets it), when there is one
        "started_at": pl.Datetime("us", "UTC"),
        "ended_at": pl.Datetime("us", "UTC"),
        "status": pl.String(),  # SUCCESS | FAILURE
        # null: not known. records_loaded counts what the destination confirmed, so a failed
        # write leaves it null and read = loaded + filtered + rejected holds only on SUCCESS.
        **dict.fromkeys(COUNTS, pl.Int64()),
        "masked_fields": pl.List(pl.String()),  # names only, never values
        "destinations": pl.List(pl.String()),  # the records', then the rejected records'
        "error": pl.String(),  # the failure's first lines, on FAILURE
    }
)


def trigger_of(tags: Mapping[str, str]) -> tuple[str, str | None]:
    """What started a run and, when its tags say, which schedule, sensor or backfill."""
    for tag, trigger in STARTERS:
        if tags.get(tag):
            return trigger, tags[tag]
    if tags.get(TRIGGER_TAG):
        return tags[TRIGGER_TAG], None
    if tags.get("dagster/from_ui") == "true":  # the UI adds it to every run it launches
        return "ui", None
    return "api", None  # GraphQL, `dagster job launch`, execute_in_process...


def error_text(exc: BaseException | None) -> str | None:
    """The failure's first lines, capped. Messages are our own and name no secret; Polars'
    sample values are cut all the same, as they may be records' values."""
    if exc is None:
        return None
    text = exc.description if isinstance(exc, dg.Failure) else None
    text = text or f"{type(exc).__name__}: {exc}"
    lines = [line for line in text.strip().splitlines() if line.strip()][:ERROR_LINES]
    text = without_samples("\n".join(lines))
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def build_record(context: dg.HookContext, flow: FlowSpec, status: str) -> dict[str, Any]:
    """The run's record, from its tags, its materializations and the hooked step's outcome."""
    run = context.instance.get_run_record_by_id(context.run_id)
    tags = run.dagster_run.tags if run else {}
    started = (
        datetime.fromtimestamp(run.start_time, UTC) if run and run.start_time else datetime.now(UTC)
    )
    trigger, started_by = trigger_of(tags)
    materialized = _materializations(context, flow)
    known: dict[str, Any] = {}
    exc = context.op_exception
    if isinstance(exc, dg.Failure):  # a validate task's `fail` carries the counts
        known.update(_values(exc.metadata))
    known.update(_values(context.op_output_metadata.get("records") or {}))
    known.update(materialized.get("records", {}))
    counts = {name: _int(known.get(name)) for name in COUNTS}
    counts["records_loaded"] = _int(materialized.get("records", {}).get("records_loaded"))
    return {
        "flow": flow.name,
        "run_id": context.run_id,
        "job": context.job_name,
        "trigger": trigger,
        "started_by": started_by,
        "user": tags.get("user"),
        "started_at": started,
        "ended_at": datetime.now(UTC),
        "status": status,
        **counts,
        "masked_fields": sorted(masked_fields(flow)),
        "destinations": [
            str(materialized[name]["destination"])
            for name in ("records", "rejected")
            if "destination" in materialized.get(name, {})
        ],
        "error": error_text(exc) if status == "FAILURE" else None,
    }


def _materializations(context: dg.HookContext, flow: FlowSpec) -> dict[str, dict[str, Any]]:
    """Metadata of the flow's assets materialized in this run, by asset name."""
    found = {}
    events = context.instance.all_logs(
        context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    for event in events:
        mat = event.asset_materialization
        if mat is not None and mat.asset_key.path[0] == flow.name:
            found[mat.asset_key.path[-1]] = _values(mat.metadata)
    return found


def _values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def frame(record: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([record], schema=SCHEMA)


def append(lake: Lake, record: dict[str, Any]) -> None:
    """Append the record to the lake's audit table; one writer at a time, as runs of several
    flows may end together and a lake append publishes a whole new version of the table."""
    lake.root.mkdir(parents=True, exist_ok=True)
    with open(lake.root / f".{TABLE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lake.write(TABLE, frame(record).lazy(), "append")


def put_s3(record: dict[str, Any], settings: S3Settings, connection: Any) -> None:
    """The record as one JSON line under the destination bucket's `_audit/<prefix>/`."""
    settings = resolve_kms_key(settings, connection)
    prefix = settings.prefix.strip("/") or record["flow"]
    key = f"_audit/{prefix}/{record['flow']}-{record['run_id']}.jsonl"
    connection.client("s3").put_object(
        Bucket=settings.bucket,
        Key=key,
        Body=frame(record).write_ndjson().encode(),
        ContentType="application/x-ndjson",
        **encryption_args(settings),
    )


def audit_hooks(flow: FlowSpec) -> tuple[dg.HookDefinition, dg.HookDefinition]:
    """(on success, on failure) hooks that write the run's record; see the module's doc."""
    s3 = flow.destination.s3
    keys = {LAKE_RESOURCE} | ({resource_key(s3.connection)} if s3 else set())

    def audit(context: dg.HookContext, status: str) -> None:
        record = _attempt(context, flow, "built", lambda: build_record(context, flow, status))
        if record is None:
            return
        lake = Lake(getattr(context.resources, LAKE_RESOURCE).root)
        _attempt(context, flow, f"written to {lake.root}", lambda: append(lake, record))
        if s3 is not None:
            connection = getattr(context.resources, resource_key(s3.connection))
            _attempt(context, flow, f"copied to s3://{s3.bucket}/_audit/",
                     lambda: put_s3(record, s3, connection))  # fmt: skip

    @dg.success_hook(name=f"{flow.name}__audit_success", required_resource_keys=keys)
    def on_success(context: dg.HookContext) -> None:
        audit(context, "SUCCESS")

    @dg.failure_hook(name=f"{flow.name}__audit_failure", required_resource_keys=keys)
    def on_failure(context: dg.HookContext) -> None:
        audit(context, "FAILURE")

    return on_success, on_failure


def _attempt(context: dg.HookContext, flow: FlowSpec, what: str, action: Callable[[], Any]) -> Any:
    """Run one audit action; a failure is a warning, never the run's failure or its error."""
    try:
        return action()
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        context.log.warning(
            f"flow {flow.name}: audit record of run {context.run_id} not {what}: "
            f"{type(exc).__name__}: {reason} (the run's own outcome is unchanged)"
        )
        return None


def read_runs(lake: Lake, flow: str, limit: int | None = None) -> pl.DataFrame:
    """The flow's records, newest first."""
    if not lake.files(TABLE):
        return pl.DataFrame(schema=SCHEMA)
    runs = lake.scan(TABLE).filter(pl.col("flow") == flow).sort("started_at", descending=True)
    return (runs.head(limit) if limit else runs).collect()


def recorded_flows(lake: Lake) -> list[str]:
    if not lake.files(TABLE):
        return []
    return lake.scan(TABLE).select(pl.col("flow").unique().sort()).collect()["flow"].to_list()


SHOWN = ("records_read", "records_filtered", "records_loaded", "records_rejected")
HEADER = ("started (UTC)", "duration", "status", "read", "filtered", "loaded", "rejected",
          "trigger", "run id", "error")  # fmt: skip


def format_runs(runs: pl.DataFrame) -> str:
    """An execution history table: one line per run, the error's first line last."""
    rows = [HEADER]
    for r in runs.iter_rows(named=True):  # one line per run, for display: a handful of rows
        trigger = " ".join(filter(None, [r["trigger"], r["started_by"]]))
        rows.append((
            f"{r['started_at']:%Y-%m-%d %H:%M:%S}",
            _duration((r["ended_at"] - r["started_at"]).total_seconds()),
            r["status"],
            *("-" if r[n] is None else str(r[n]) for n in SHOWN),
            trigger + (f" by {r['user']}" if r["user"] else ""),
            r["run_id"],
            (r["error"] or "").split("\n")[0],
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
