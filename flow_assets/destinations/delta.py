"""`format: delta` on the S3 destination: a Delta Lake table under the prefix, written by the
deltalake package. Each write is one commit to the table's log, so readers see all of a run
or none of it; upsert is Delta's MERGE by key, and new source fields become new columns."""

import tempfile
from pathlib import Path
from typing import Any

from flow_assets.connectors.aws import AwsConnection
from flow_assets.destinations.staging import Staged, last_per_key
from flow_assets.spec.models import S3Settings


def table_uri(settings: S3Settings, flow: str) -> str:
    return f"s3://{settings.bucket}/{settings.prefix.strip('/') or flow}"


def storage_options(settings: S3Settings, connection: AwsConnection) -> dict[str, str]:
    options = connection.storage_options()
    enc = settings.encryption
    if enc is not None:
        options["AWS_SERVER_SIDE_ENCRYPTION"] = "AES256" if enc.type == "sse-s3" else "aws:kms"
        if enc.type == "sse-kms" and enc.kms_key_id:
            options["AWS_SSE_KMS_KEY_ID"] = enc.kms_key_id
    return options


def write_delta(
    staged: Staged, settings: S3Settings, flow: str, connection: AwsConnection, mode: str,
    key: list[str],
) -> dict[str, Any]:  # fmt: skip
    """Append, overwrite or merge the staged records; returns what the commit did."""
    from deltalake import DeltaTable, write_deltalake

    uri = table_uri(settings, flow)
    options = storage_options(settings, connection)
    exists = DeltaTable.is_deltatable(uri, storage_options=options)
    with tempfile.TemporaryDirectory(prefix="flowbridge-delta-") as tmp:
        if mode == "upsert" and exists:
            source = last_per_key(staged, key, Path(tmp) / "source")
            on = " AND ".join(f"s.`{k}` = t.`{k}`" for k in key)
            metrics = (
                DeltaTable(uri, storage_options=options)
                .merge(_reader(source), on, source_alias="s", target_alias="t", merge_schema=True)
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
            changed = {
                "rows_inserted": metrics["num_target_rows_inserted"],
                "rows_updated": metrics["num_target_rows_updated"],
            }
        else:
            if mode == "upsert":  # the first upsert creates the table from one record per key
                staged = last_per_key(staged, key, Path(tmp) / "source")
            write_deltalake(
                uri,
                _reader(staged),
                mode="overwrite" if mode == "overwrite" else "append",
                schema_mode="overwrite" if mode == "overwrite" else "merge",
                storage_options=options,
            )
            changed = {"rows_inserted": staged.rows}
    table = DeltaTable(uri, storage_options=options)
    return {
        "prefix": uri.split("/", 3)[3] + "/",
        "delta_version": table.version(),
        "dagster/row_count": _rows(table),
        **changed,
    }


def _reader(staged: Staged) -> Any:
    """The staged files as a stream of Arrow batches: Delta reads them a batch at a time."""
    import pyarrow.dataset as ds  # here, not at import: pyarrow costs every run ~40 MB

    return ds.dataset([str(f) for f in staged.files], format="parquet").scanner().to_reader()


def _rows(table: Any) -> int:
    """The table's records, from the statistics in its log, without reading the data."""
    import pyarrow as pa

    return sum(pa.table(table.get_add_actions(flatten=True)).column("num_records").to_pylist())
