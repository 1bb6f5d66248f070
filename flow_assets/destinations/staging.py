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

ROW_GROUP_ROWS = 50_000  # pages are buffered up to this many rows per Parquet row group


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


class ParquetBatchWriter:
    """Appends frames to one Parquet file in row groups of about ROW_GROUP_ROWS rows; the file
    appears under its name only when closed without error (atomic rename)."""

    def __init__(self, target: Path, schema: pl.Schema, compression: str = "lz4"):
        self.target = target
        self.schema = schema
        self.rows = 0
        self._arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
        target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        self._writer = pq.ParquetWriter(self._tmp, self._arrow_schema, compression=compression)
        self._buffer: list[pl.DataFrame] = []
        self._buffered = 0

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        self._buffer.append(frame.select(list(self.schema)))
        self._buffered += frame.height
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            table = pl.concat(self._buffer).to_arrow().cast(self._arrow_schema)
            self._writer.write_table(table)
            self.rows += self._buffered
            self._buffer, self._buffered = [], 0

    def __enter__(self) -> "ParquetBatchWriter":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
            if exc_type is None:
                os.replace(self._tmp, self.target)
        finally:
            self._tmp.unlink(missing_ok=True)

    def staged(self) -> "Staged":
        return Staged(self.target, self.rows, self.target.stat().st_size)


def read_batches(path: Path, rows: int) -> Iterator[pl.DataFrame]:
    """The file's records in frames of at most `rows`, one at a time."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        yield pl.from_arrow(batch)  # type: ignore[misc]


class StagingArea(dg.ConfigurableResource):
    """A local folder holding each flow's extracted data (LOCAL); S3 with SSE-KMS in AWS."""

    root: str = Field(description="Folder for staged Parquet files.")

    def path(self, *parts: str) -> Path:
        return Path(self.root, *parts[:-1], parts[-1] + ".parquet")

    def writer(self, schema: pl.Schema, *parts: str) -> ParquetBatchWriter:
        return ParquetBatchWriter(self.path(*parts), schema)

    def write_stream(self, stream: PageStream, *parts: str) -> "Staged":
        """Write pages as they arrive, so memory does not grow with the number of records."""
        with self.writer(stream.schema, *parts) as writer:
            for page in stream.pages:
                writer.write(page)
        return writer.staged()

    def sink(self, lf: pl.LazyFrame, *parts: str) -> "Staged":
        target = self.path(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            lf.sink_parquet(tmp, compression="lz4")
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
