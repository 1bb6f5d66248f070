"""The staging area: extracted pages land here as Parquet, written as they arrive."""

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
from pydantic import Field

ROW_GROUP_ROWS = 100_000  # pages are buffered up to this many rows per Parquet row group


@dataclass
class PageStream:
    """Typed pages from a source, consumed once by whoever stores them."""

    pages: Iterator[pl.DataFrame]
    schema: pl.Schema
    # Called after the pages are consumed: what the source reports (pages, retries, bytes...).
    stats: Callable[[], dict[str, Any]] = field(default=lambda: {})


@dataclass(frozen=True)
class Staged:
    path: Path
    rows: int
    bytes: int


class StagingArea(dg.ConfigurableResource):
    """A local folder holding each flow's extracted data (LOCAL); S3 with SSE-KMS in AWS."""

    root: str = Field(description="Folder for staged Parquet files.")

    def path(self, *parts: str) -> Path:
        return Path(self.root, *parts[:-1], parts[-1] + ".parquet")

    def write_stream(self, stream: PageStream, *parts: str) -> "Staged":
        """Write pages as they arrive; the file appears only once complete (atomic rename)."""
        target = self.path(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        arrow_schema = pl.DataFrame(schema=stream.schema).to_arrow().schema
        rows = 0
        try:
            with pq.ParquetWriter(tmp, arrow_schema, compression="zstd") as writer:
                buffer: list[pl.DataFrame] = []
                buffered = 0
                for page in stream.pages:
                    buffer.append(page.select(list(stream.schema)))
                    buffered += page.height
                    if buffered >= ROW_GROUP_ROWS:
                        writer.write_table(pl.concat(buffer).to_arrow().cast(arrow_schema))
                        rows, buffer, buffered = rows + buffered, [], 0
                if buffer:
                    writer.write_table(pl.concat(buffer).to_arrow().cast(arrow_schema))
                    rows += buffered
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return Staged(target, rows, target.stat().st_size)

    def sink(self, lf: pl.LazyFrame, *parts: str) -> "Staged":
        target = self.path(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            lf.sink_parquet(tmp, compression="zstd")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        rows = pl.scan_parquet(target).select(pl.len()).collect().item()
        return Staged(target, rows, target.stat().st_size)

    def scan(self, *parts: str) -> pl.LazyFrame:
        target = self.path(*parts)
        if not target.exists():
            raise FileNotFoundError(
                f"nothing staged at {target}: materialize the upstream asset first"
            )
        return pl.scan_parquet(target)


class StagingIOManager(dg.ConfigurableIOManager):
    """Stores an asset's PageStream or frame in the staging area; loads it as a LazyFrame."""

    staging: StagingArea

    def handle_output(self, context: dg.OutputContext, obj: PageStream | pl.LazyFrame) -> None:
        parts = context.asset_key.path
        if isinstance(obj, PageStream):
            staged = self.staging.write_stream(obj, *parts)
            extra = obj.stats()
        else:
            staged = self.staging.sink(obj.lazy(), *parts)
            extra = {}
        schema = pl.scan_parquet(staged.path).collect_schema()
        context.add_output_metadata(
            {
                "dagster/row_count": staged.rows,
                "bytes": staged.bytes,
                "staged_at": dg.MetadataValue.path(str(staged.path)),
                "dagster/column_schema": table_schema(schema),
                **extra,
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        return self.staging.scan(*context.asset_key.path)


def table_schema(schema: pl.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()]
    )
