"""The staging area: extracted pages land here as Parquet datasets, written as they arrive."""

import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from flow_assets.destinations.staging_crypto import (
    SENSITIVE_SUFFIX,
    ColumnCipher,
    is_encrypted,
    local_master_key,
)
from flow_assets.destinations.staging_paths import io_parts, latest_materialization

STAGED_COPY = "staged_copy"  # metadata: where a copy of the staged dataset lives (AWS)
ROW_GROUP_ROWS = 50_000  # records per staged file: what the transform holds in memory at once


@dataclass
class PageStream:
    """Typed pages from a source, consumed once by whoever stores them."""

    pages: Iterator[pl.DataFrame]
    schema: pl.Schema
    # Called after the pages are consumed: what the source reports (pages, retries, bytes...).
    stats: Callable[[], dict[str, Any]] = field(default=lambda: {})
    # Columns holding raw values of masked fields: encrypted at rest in the staging area.
    sensitive: Sequence[str] = ()


@dataclass(frozen=True)
class Staged:
    """A staged dataset: a folder of Parquet files. Destinations may take the files as they are."""

    path: Path
    rows: int
    bytes: int

    @property
    def files(self) -> list[Path]:
        return data_files(self.path)


def data_files(folder: Path) -> list[Path]:
    """A staged dataset's data files; each may have an encrypted side file of its sensitive
    columns (`<name>.sensitive.enc.parquet`), which is not a data file of its own."""
    return sorted(p for p in folder.glob("*.parquet") if not is_encrypted(p))


def sensitive_file(data_file: Path) -> Path:
    return data_file.with_name(data_file.name.removesuffix(".parquet") + SENSITIVE_SUFFIX)


class ParquetBatchWriter:
    """Appends frames to a staged dataset: a folder of Parquet files of about ROW_GROUP_ROWS
    records each. The folder appears under its name only when closed without error."""

    def __init__(
        self, target: Path, schema: pl.Schema, cipher: ColumnCipher | None = None,
        sensitive: Sequence[str] = (),
    ):  # fmt: skip
        self.target = target
        self.schema = schema
        self.cipher = cipher
        self.sensitive = [c for c in sensitive if c in schema]
        if self.sensitive and cipher is None:
            raise ValueError(f"columns {self.sensitive} are sensitive: staging them needs a cipher")
        self.rows = 0
        self._tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        self._tmp.mkdir(parents=True)
        self._buffer: list[pl.DataFrame] = []
        self._buffered = 0
        self._files = 0

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        if frame.schema != self.schema:  # pages usually come typed already: no copy then
            frame = frame.select(list(self.schema)).cast(dict(self.schema))
        self._buffer.append(frame)
        self._buffered += frame.height
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush()

    def write_subset(self, frame: pl.DataFrame) -> None:
        """Like write, for rows filtered out of a larger frame: a filtered frame can keep the
        larger one's buffers alive while it waits here, so a compact copy waits instead."""
        if 0 < frame.height < ROW_GROUP_ROWS // 10:  # a large one is flushed soon enough
            frame = pl.read_ipc(frame.write_ipc(None))
        self.write(frame)

    def _flush(self) -> None:
        # Polars writes each file whole; a file per batch keeps memory flat without a
        # second allocator (pyarrow's writer holds on to what it allocated).
        if self._buffer or self._files == 0:
            frame = pl.concat(self._buffer) if self._buffer else pl.DataFrame(schema=self.schema)
            path = self._tmp / f"part-{self._files:05d}.parquet"
            if self.cipher is not None and self.sensitive:
                # The sensitive columns go, encrypted, to a side file; the data file holds
                # nulls in their place, so its schema (what the transform plans with) is whole.
                self.cipher.write(frame.select(self.sensitive), sensitive_file(path))
                frame = frame.with_columns(
                    pl.lit(None, frame.schema[c]).alias(c) for c in self.sensitive
                )
            frame.write_parquet(path, compression="lz4")
            self._files += 1
            self.rows += self._buffered
            self._buffer, self._buffered = [], 0

    def __enter__(self) -> "ParquetBatchWriter":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        self._flush()
        replace_folder(self._tmp, self.target)

    def staged(self) -> "Staged":
        size = sum(f.stat().st_size for f in data_files(self.target))
        return Staged(self.target, self.rows, size)


def replace_folder(new: Path, target: Path) -> None:
    """Put `new` in place of `target`: readers see the old folder or the new one."""
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def parquet_rows(files: Sequence[Path]) -> int:
    """How many records the files hold, from their footers, without reading the data."""
    return sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)


def last_per_key(staged: Staged, key: Sequence[str], target: Path) -> Staged:
    """A staged dataset with the last record of each key (later pages carry newer data): what
    a merge by key takes, since a merge must not meet one key twice."""
    target.mkdir(parents=True)
    part = target / "part-00000.parquet"
    pl.scan_parquet(staged.files).unique(
        subset=list(key), keep="last", maintain_order=True
    ).sink_parquet(part)
    return Staged(target, parquet_rows([part]), part.stat().st_size)


def read_batches(folder: Path, cipher: ColumnCipher | None = None) -> Iterator[pl.DataFrame]:
    """A staged dataset's records, one file (about ROW_GROUP_ROWS records) at a time, with
    their sensitive columns decrypted from the side files by the cipher."""
    for path in data_files(folder):
        frame = pl.read_parquet(path)
        side = sensitive_file(path)
        if side.exists():
            if cipher is None:
                raise ValueError(f"{side} is encrypted: reading it needs the staging key")
            frame = frame.with_columns(cipher.read(side))
        yield frame


class StagingArea(dg.ConfigurableResource):
    """A local folder holding each flow's extracted data (LOCAL); S3 with SSE-KMS in AWS."""

    root: str = Field(description="Folder for staged Parquet datasets.")

    def path(self, *parts: str) -> Path:
        return Path(self.root, *parts)

    def writer(
        self, schema: pl.Schema, *parts: str, sensitive: Sequence[str] = ()
    ) -> ParquetBatchWriter:
        cipher = self.cipher() if sensitive else None
        return ParquetBatchWriter(self.path(*parts), schema, cipher, sensitive)

    def cipher(self) -> ColumnCipher:
        """Encrypts sensitive columns with a local master key: FLOWBRIDGE_STAGING_KEY, or a key
        file `staging.key` beside the staging folder, made on first use (owner-only)."""
        key_file = Path(self.root).parent / "staging.key"
        return ColumnCipher(local_master_key(os.environ.get("FLOWBRIDGE_STAGING_KEY"), key_file))

    def read_batches(self, *parts: str) -> Iterator[pl.DataFrame]:
        folder = self.path(*parts)
        encrypted = any(folder.glob(f"*{SENSITIVE_SUFFIX}"))
        return read_batches(folder, self.cipher() if encrypted else None)

    def write_stream(self, stream: PageStream, *parts: str) -> "Staged":
        """Write pages as they arrive, so memory does not grow with the number of records."""
        with self.writer(stream.schema, *parts, sensitive=stream.sensitive) as writer:
            for page in stream.pages:
                writer.write(page)
        return writer.staged()

    def publish(self, staged: Staged, run_id: str, *parts: str) -> dict[str, Any]:
        """Copies a staged dataset elsewhere (S3, in AWS); returns metadata naming them.
        Locally the folder is the only copy."""
        return {}

    def restore(self, copy: str | None, *parts: str) -> None:
        """Bring a dataset back from its copy when the local folder lacks it."""
        raise FileNotFoundError(
            f"nothing staged at {self.path(*parts)}: materialize the upstream asset first"
        )

    def staged(self, *parts: str) -> Staged:
        target = self.path(*parts)
        files = data_files(target)
        return Staged(target, parquet_rows(files), sum(f.stat().st_size for f in files))

    def scan(self, *parts: str) -> pl.LazyFrame:
        target = self.path(*parts)
        files = data_files(target)
        if not files:
            raise FileNotFoundError(
                f"nothing staged at {target}: materialize the upstream asset first"
            )
        return pl.scan_parquet(files)  # sensitive columns read as nulls here


class StagingIOManager(dg.ConfigurableIOManager):
    """Stores an asset's PageStream in the staging area; loads it as a LazyFrame."""

    staging: StagingArea

    def handle_output(self, context: dg.OutputContext, obj: PageStream) -> None:
        parts = io_parts(context)
        staged = self.staging.write_stream(obj, *parts)
        copies = self.staging.publish(staged, context.run_id, *parts)
        schema = self.staging.scan(*parts).collect_schema()
        context.add_output_metadata(
            {
                "dagster/row_count": staged.rows,
                "bytes": staged.bytes,
                "staged_at": dg.MetadataValue.path(str(staged.path)),
                "dagster/column_schema": table_schema(schema),
                **copies,
                **obj.stats(),
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        parts = io_parts(context)
        if not data_files(self.staging.path(*parts)):
            materialization = latest_materialization(context)
            meta = materialization.metadata if materialization else {}
            copy = meta.get(STAGED_COPY)
            self.staging.restore(str(copy.value) if copy else None, *parts)
        return self.staging.scan(*parts)


def table_schema(schema: pl.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in schema.items()]
    )
