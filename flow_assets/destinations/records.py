"""Shared by per-record destinations (DynamoDB, EventBridge): staged records as JSON-ready
dicts, batch by batch, and the error location for records a destination refuses."""

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import polars as pl
from pydantic import Field

from flow_assets.connectors.aws import AwsConnection
from flow_assets.destinations.lake import Lake
from flow_assets.destinations.s3_staging import publish_rejected
from flow_assets.destinations.staging import ParquetBatchWriter, Staged, read_batches
from flow_assets.transforms.tasks import rejection_stamp

T = TypeVar("T")


def json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def staged_rows(staged: Staged) -> Iterator[dict[str, Any]]:
    """One dict per record, one staged file (about 50k records) in memory at a time."""
    for frame in read_batches(staged.path):
        yield from frame.iter_rows(named=True)


def chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def retry_partial(
    send: Callable[[list[T]], list[T]], batch: list[T], attempts: int, what: str
) -> None:
    """Send a batch; `send` returns what the service did not take, which is sent again with
    exponential backoff until nothing is left or the attempts run out."""
    pending = batch
    for attempt in range(attempts):
        pending = send(pending)
        if not pending:
            return
        if attempt + 1 < attempts:  # no wait once the last attempt has failed
            time.sleep(min(0.05 * 2**attempt, 5.0))
    raise RuntimeError(f"{what}: {len(pending)} records still refused after {attempts} attempts")


def reject(
    error_root: str | Path, table: str, rows: Sequence[dict[str, Any]], reasons: Sequence[str],
    run_id: str, connection: AwsConnection | None = None, kms_key_id: str | None = None,
) -> None:  # fmt: skip
    """Records a destination refused go to the flow's error location with the reason: the
    lake's `<table>__rejected`, or under an `s3://` error root (the AWS environment)."""
    if not rows:
        return
    frame = pl.DataFrame(list(rows)).with_columns(
        pl.Series("_fb_reason", list(reasons), dtype=pl.String),
        *rejection_stamp(run_id, datetime.now(UTC)),
    )
    if not str(error_root).startswith("s3://"):
        Lake(error_root).write(f"{table}__rejected", frame.lazy(), "append")
        return
    assert connection is not None, "an s3:// error root needs the destination's aws connection"
    with tempfile.TemporaryDirectory(prefix="flowbridge-rejected-") as tmp:
        with ParquetBatchWriter(Path(tmp, "rejected"), frame.schema) as writer:
            writer.write(frame)
        publish_rejected(connection.client("s3"), str(error_root), f"{table}__rejected",
                         writer.staged(), run_id, kms_key_id)  # fmt: skip


class RecordDestinationIOManager(dg.ConfigurableIOManager):
    """Base of destinations written record by record through an AWS API."""

    connection: AwsConnection
    error_root: str = Field(
        description="Where refused records go: the lake folder, or s3://bucket/prefix (AWS)."
    )
    error_kms_key_id: str | None = Field(None, description="SSE-KMS key of an s3:// error root.")
    attempts: int = Field(8, ge=1, description="Rounds of resending what the service refused.")

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        raise NotImplementedError(f"{type(self).__name__} writes only")


def report(
    context: dg.OutputContext, manager: RecordDestinationIOManager, written: int,
    refused: list[dict[str, Any]], reasons: list[str], destination: str,
) -> None:  # fmt: skip
    """Put refused records in the error location and say what the destination took."""
    meta = context.definition_metadata or {}
    table = str(meta.get("flowbridge/table") or context.asset_key.path[0])
    reject(manager.error_root, table, refused, reasons, context.run_id, manager.connection,
           manager.error_kms_key_id)  # fmt: skip
    context.add_output_metadata(
        {
            "rows_written": written,
            "rows_refused_by_destination": len(refused),
            "destination": destination,
        }
    )
