"""What every SaaS destination shares: the staged records are read a file at a time, cut into
the vendor's batch size and handed to the connector's SinkWriter, whose per-record results are
counted; records the vendor refuses go to the flow's error location with the vendor's error code.

A new SaaS destination is a SinkWriter (columns + write, in destinations/<vendor>_sink.py) and a
SaasSinkIOManager subclass naming its connection type and building its writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg
import polars as pl
from pydantic import Field

from flow_assets.connectors.aws import AwsConnection
from flow_assets.destinations.records import reject
from flow_assets.destinations.staging import Staged, read_batches


@dataclass(frozen=True)
class RecordResult:
    """What the vendor said of one record: written (and whether newly created), or refused with
    its error code and message. Never holds the record's values (masked fields stay masked)."""

    ok: bool
    created: bool = False
    error: str | None = None


class SinkWriter(Protocol):
    """One flow's writes to one object of a SaaS app."""

    batch_size: int  # records per write() call: the vendor's limit per request or job
    target: str  # named in metadata and errors, e.g. salesforce://prod/Opportunity (upsert)

    def columns(self, schema: pl.Schema) -> list[str]:
        """The fields sent, checked against the object before anything is written: an unknown
        or read-only field fails the run rather than every record one by one."""
        ...

    def write(self, batch: pl.DataFrame) -> list[RecordResult]:
        """Write at most `batch_size` records; one result per record, in the batch's order."""
        ...


@dataclass
class WriteTally:
    written: int = 0
    created: int = 0
    batches: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def add(self, batch: pl.DataFrame, results: list[RecordResult], target: str) -> None:
        if len(results) != batch.height:
            raise ValueError(
                f"{target}: {batch.height} records sent, {len(results)} results came back; "
                "the run stops rather than guess which were written"
            )
        failed = [i for i, r in enumerate(results) if not r.ok]
        self.batches += 1
        self.written += batch.height - len(failed)
        self.created += sum(1 for r in results if r.ok and r.created)
        if failed:
            self.refused += batch[failed].to_dicts()
            self.reasons += [results[i].error or "refused without a reason" for i in failed]


def write_all(writer: SinkWriter, staged: Staged) -> WriteTally:
    """Every staged record through `writer`, a file at a time (memory stays flat)."""
    tally, columns = WriteTally(), None
    for frame in read_batches(staged.path):
        columns = columns or writer.columns(frame.schema)
        frame = frame.select(columns)
        for offset in range(0, frame.height, writer.batch_size):
            batch = frame.slice(offset, writer.batch_size)
            tally.add(batch, writer.write(batch), writer.target)
    return tally


class SaasSinkIOManager(dg.ConfigurableIOManager):
    """Writes a flow's records to a SaaS app; records it refuses go to the error location.
    Subclasses declare `connection` (their connection resource) and implement `writer`."""

    error_root: str = Field(
        description="Where refused records go: the lake folder, or s3://bucket/prefix (AWS)."
    )
    error_kms_key_id: str | None = Field(None, description="SSE-KMS key of an s3:// error root.")
    error_region_name: str | None = Field(None, description="Region of an s3:// error root.")

    def writer(self, settings_json: str, write: str, key: list[str], rows: int) -> SinkWriter:
        raise NotImplementedError

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        raise NotImplementedError(f"{type(self).__name__} writes only")

    def handle_output(self, context: dg.OutputContext, obj: Staged) -> None:
        meta = context.definition_metadata or {}
        key = [k for k in str(meta.get("flowbridge/key", "")).split(",") if k]
        write = str(meta.get("flowbridge/write"))
        writer = self.writer(str(meta["flowbridge/settings"]), write, key, obj.rows)
        tally = write_all(writer, obj)
        table = str(meta.get("flowbridge/table") or context.asset_key.path[0])
        aws = AwsConnection(region_name=self.error_region_name) if self.error_region_name else None
        reject(self.error_root, table, tally.refused, tally.reasons, context.run_id, aws,
               self.error_kms_key_id)  # fmt: skip
        context.add_output_metadata(
            {
                "rows_written": tally.written,
                "rows_refused_by_destination": len(tally.refused),
                "rows_created": tally.created,
                "batches": tally.batches,
                "destination": writer.target,
            }
        )
