"""The Redshift destination: stage Parquet in S3, COPY it into a temporary table, and merge it
into the target by key in one transaction; the table is created from the records' schema and
gains a column when the source gains a field."""

import json
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from flow_assets.connectors.aws import AwsConnection
from flow_assets.connectors.redshift import RedshiftConnection
from flow_assets.destinations import redshift_sql as sql
from flow_assets.destinations.redshift_runners import PostgresRunner, StagedLoad, runner_for
from flow_assets.destinations.s3 import S3Writer, encryption_args, resolve_kms_key
from flow_assets.destinations.staging import Staged, last_per_key
from flow_assets.spec.models import RedshiftSettings, S3Encryption, S3Settings


class RedshiftIOManager(dg.ConfigurableIOManager):
    connection: RedshiftConnection
    staging: AwsConnection
    error_root: str = Field(description="Unused by Redshift; kept for a uniform wiring.")

    def handle_output(self, context: dg.OutputContext, obj: Staged) -> None:
        meta = context.definition_metadata or {}
        settings = RedshiftSettings.model_validate_json(str(meta["flowbridge/settings"]))
        flow = context.asset_key.path[0]
        table = settings.table or flow
        mode = str(meta.get("flowbridge/write", "append"))
        key = [k for k in str(meta.get("flowbridge/key", "")).split(",") if k]
        stage_settings = self._stage_settings(flow)
        s3 = self.staging.client("s3")
        conn = self.connection
        with tempfile.TemporaryDirectory(prefix="flowbridge-redshift-") as tmp:
            data = last_per_key(obj, key, Path(tmp) / "deduped") if mode == "upsert" else obj
            columns = pl.scan_parquet(data.files[0]).collect_schema()
            staged = S3Writer(s3, stage_settings, flow, context.run_id, datetime.now(UTC)).write(
                data, "append"
            )
        manifest_key = f"{staged.prefix}redshift.manifest"
        s3.put_object(
            Bucket=conn.staging_bucket,
            Key=manifest_key,
            Body=json.dumps(redshift_manifest(conn.staging_bucket, staged.files)).encode(),
            **encryption_args(stage_settings),
        )
        runner = runner_for(conn)
        if isinstance(runner, PostgresRunner):
            runner.s3 = s3
        stage = f"fb_stage_{uuid.uuid4().hex[:12]}"
        existing = runner.columns(settings.db_schema, table)
        before = sql.create_table(settings.db_schema, table, columns) if not existing else []
        before += sql.add_columns(settings.db_schema, table, columns, existing) if existing else []
        before.append(sql.create_stage(stage, columns))
        load = StagedLoad(
            stage_table=stage,
            bucket=conn.staging_bucket,
            keys=[f["key"] for f in staged.files],
            manifest_url=f"s3://{conn.staging_bucket}/{manifest_key}",
            iam_role=conn.iam_role or "",
            columns=list(columns),
        )
        after = sql.merge(settings.db_schema, table, stage, list(columns), mode, key)
        runner.transaction(before, load, after)
        for item in [*staged.files, {"key": manifest_key}, {"key": staged.manifest}]:  # loaded
            s3.delete_object(Bucket=conn.staging_bucket, Key=item["key"])
        context.add_output_metadata(
            {
                "rows_written": staged.rows,
                "write_mode": mode,
                "destination": f"redshift://{conn.database}/{settings.db_schema}.{table}",
                "columns_added": len(sql.add_columns(settings.db_schema, table, columns, existing))
                if existing
                else 0,
            }
        )

    def _stage_settings(self, flow: str) -> S3Settings:
        """Where the files for COPY are staged, encrypted with the connection's KMS key (else
        SSE-S3); a missing key fails here, before anything is staged."""
        conn = self.connection
        key = conn.staging_kms_key_id
        encryption = (
            S3Encryption(type="sse-kms", kms_key_id=key) if key else S3Encryption(type="sse-s3")
        )
        settings = S3Settings(
            connection=conn.staging_connection, bucket=conn.staging_bucket,
            prefix=f"{conn.staging_prefix.strip('/')}/{flow}", partitioning=["run_id"],
            encryption=encryption,
        )  # fmt: skip
        try:
            return resolve_kms_key(settings, self.staging)
        except dg.Failure:
            raise dg.Failure(
                f"connections.yaml: {conn.connection_name}.staging_kms_key_id: KMS key '{key}' "
                f"not found in {self.staging.region_name}; create the key or fix the setting"
            ) from None

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        raise NotImplementedError("reading back from Redshift is not needed by any flow yet")


def redshift_manifest(bucket: str, files: list[dict]) -> dict:
    """COPY's manifest; Parquet needs each file's content_length."""
    return {
        "entries": [
            {"url": f"s3://{bucket}/{f['key']}", "mandatory": True,
             "meta": {"content_length": f["bytes"]}}
            for f in files
        ]
    }  # fmt: skip
