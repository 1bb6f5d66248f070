"""Shared by per-record destinations (DynamoDB, EventBridge): staged records as JSON-ready
dicts, batch by batch, and the error location for records a destination refuses."""

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
from flow_assets.destinations.staging import Staged, read_batches
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
    run_id: str,
) -> None:  # fmt: skip
    """Records a destination refused go to the flow's error location with the reason."""
    if not rows:
        return
    frame = pl.DataFrame(list(rows)).with_columns(
        pl.Series("_fb_reason", list(reasons), dtype=pl.String),
        *rejection_stamp(run_id, datetime.now(UTC)),
    )
    Lake(error_root).write(f"{table}__rejected", frame.lazy(), "append")


class RecordDestinationIOManager(dg.ConfigurableIOManager):
    """Base of destinations written record by record through an AWS API."""

    connection: AwsConnection
    error_root: str = Field(description="The lake folder holding the flows' rejected records.")
    attempts: int = Field(8, ge=1, description="Rounds of resending what the service refused.")

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        raise NotImplementedError(f"{type(self).__name__} writes only")


def report(
    context: dg.OutputContext, error_root: str, written: int, refused: list[dict[str, Any]],
    reasons: list[str], destination: str,
) -> None:  # fmt: skip
    """Put refused records in the error location and say what the destination took."""
    meta = context.definition_metadata or {}
    table = str(meta.get("flowbridge/table") or context.asset_key.path[0])
    reject(error_root, table, refused, reasons, context.run_id)
    context.add_output_metadata(
        {
            "rows_written": written,
            "rows_refused_by_destination": len(refused),
            "destination": destination,
        }
    )
