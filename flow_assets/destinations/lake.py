"""The embedded default destination: versioned Parquet tables with a DuckDB view over each.

A table is a folder of versions; `_current` names the one readers use. A write builds a new
version beside the current one (append hard-links the existing files and adds one; upsert and
overwrite write the merged result), then switches the DuckDB view and `_current` to it, so a
reader sees the old table or the new one, never a half-written one. Writing costs one pass over
the new records (append) or the table (upsert), and memory stays flat: DuckDB and Polars stream.
"""

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from flow_assets.destinations.staging import Staged, parquet_rows, table_schema

WriteMode = Literal["append", "overwrite", "upsert"]
DB_FILE = "lake.duckdb"
CURRENT = "_current"


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _file_list(files: Sequence[Path]) -> str:
    return "[" + ", ".join(_sql_path(f) for f in files) + "]"


@dataclass(frozen=True)
class WriteResult:
    table: str
    rows_written: int
    rows_in_table: int
    version: Path
    bytes: int


class Lake:
    """A folder with Parquet tables and a DuckDB database of views over them."""

    def __init__(self, root: str | Path, memory_limit: str = "256MB"):
        self.root = Path(root).resolve()
        self.memory_limit = memory_limit

    @property
    def database(self) -> Path:
        return self.root / DB_FILE

    def table_dir(self, table: str) -> Path:
        return self.root / "tables" / table

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        self.root.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(self.database), read_only=read_only)
        con.execute(f"SET memory_limit = '{self.memory_limit}'")
        return con

    def files(self, table: str) -> list[Path]:
        """The Parquet files of the table's current version; [] if it has none."""
        pointer = self.table_dir(table) / CURRENT
        if not pointer.exists():
            return []
        return sorted((self.table_dir(table) / pointer.read_text().strip()).glob("*.parquet"))

    def scan(self, table: str) -> pl.LazyFrame:
        files = self.files(table)
        if not files:
            raise FileNotFoundError(f"the lake has no table '{table}' under {self.root}")
        return pl.concat([pl.scan_parquet(f) for f in files], how="diagonal_relaxed")

    def tables(self) -> list[str]:
        return sorted(p.parent.name for p in (self.root / "tables").glob(f"*/{CURRENT}"))

    def write(
        self,
        table: str,
        data: pl.LazyFrame | Staged,
        mode: WriteMode = "append",
        key: Sequence[str] = (),
    ) -> WriteResult:
        """Write records (a LazyFrame, or staged Parquet files, which are linked, not rewritten)."""
        with self.writing():
            return self._write(table, data, mode, key)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One writer at a time, across processes: two runs writing at once (partitions of a
        flow backfilled in parallel) would each publish a version without the other's
        records, and DuckDB lets one process at a time open the database for writing."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".write.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write(
        self, table: str, data: pl.LazyFrame | Staged, mode: WriteMode, key: Sequence[str]
    ) -> WriteResult:
        folder = self.table_dir(table)
        version = folder / f"v-{uuid.uuid4().hex}"
        version.mkdir(parents=True)
        try:
            incoming = self._bring(data, version)
            written = parquet_rows(incoming)
            old = self.files(table)
            if old and not written and mode != "overwrite":
                shutil.rmtree(version)  # nothing new: the current version stays
                current = old[0].parent
                return WriteResult(
                    table, 0, parquet_rows(old), current, sum(f.stat().st_size for f in old)
                )
            if old and mode != "overwrite":
                _check_types(table, old, incoming)
            if mode == "append":
                for path in old:
                    _link(path, version / path.name)
            elif mode == "upsert":
                written = self._upsert(old, incoming, key, version)
            files = sorted(version.glob("*.parquet"))
            self._publish(table, version, files)
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        return WriteResult(
            table, written, parquet_rows(files), version, sum(f.stat().st_size for f in files)
        )

    def _bring(self, data: pl.LazyFrame | Staged, version: Path) -> list[Path]:
        if isinstance(data, Staged):
            targets = [version / f"part-{uuid.uuid4().hex}.parquet" for _ in data.files]
            for source, target in zip(data.files, targets, strict=True):
                _link(source, target)
            return targets
        target = version / f"part-{uuid.uuid4().hex}.parquet"
        data.sink_parquet(target, compression="zstd")
        return [target]

    def _upsert(
        self, old: list[Path], incoming: list[Path], key: Sequence[str], version: Path
    ) -> int:
        """Rewrite the table as old records without a newer version plus the new ones; within
        one batch the last record of a key wins, as later pages carry newer data."""
        keys = ", ".join(quote(k) for k in key)
        new = (
            f"(SELECT * EXCLUDE (__fb_row) FROM (SELECT *, row_number() OVER () AS __fb_row "
            f"FROM read_parquet({_file_list(incoming)}, union_by_name = true)) QUALIFY row_number() OVER "
            f"(PARTITION BY {keys} ORDER BY __fb_row DESC) = 1)"
        )
        query = f"SELECT * FROM {new}"
        if old:
            on = " AND ".join(f"o.{quote(k)} IS NOT DISTINCT FROM n.{quote(k)}" for k in key)
            query = (
                f"SELECT * FROM read_parquet({_file_list(old)}, union_by_name = true) o "
                f"WHERE NOT EXISTS (SELECT 1 FROM read_parquet({_file_list(incoming)}, union_by_name = true) n "
                f"WHERE {on}) UNION ALL BY NAME {query}"
            )
        merged = version / f"part-{uuid.uuid4().hex}.parquet"
        with self.connect() as con:
            written = con.execute(f"SELECT count(*) FROM {new}").fetchone()[0]
            con.execute(f"COPY ({query}) TO {_sql_path(merged)} (FORMAT parquet, COMPRESSION zstd)")
        for path in incoming:
            path.unlink()
        return int(written)

    def _publish(self, table: str, version: Path, files: list[Path]) -> None:
        """Point the DuckDB view, then `_current`, at the new version; drop the old versions."""
        with self.connect() as con:
            con.execute(
                f"CREATE OR REPLACE VIEW {quote(table)} AS SELECT * FROM "
                f"read_parquet({_file_list(files)}, union_by_name = true)"
            )
        pointer = version.parent / CURRENT
        tmp = version.parent / f".{CURRENT}.{uuid.uuid4().hex}"
        tmp.write_text(version.name)
        os.replace(tmp, pointer)
        for other in version.parent.glob("v-*"):
            if other != version:
                shutil.rmtree(other, ignore_errors=True)


def _link(source: Path, target: Path) -> None:
    """Share an unchanged file between versions: a hard link, or a copy across devices."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _check_types(table: str, old: list[Path], incoming: list[Path]) -> None:
    """New columns are welcome; a column whose type changed is refused, naming it."""
    before: dict[str, pl.DataType] = {}
    for path in old:  # files of one table may differ by columns added over time
        before.update(pl.scan_parquet(path).collect_schema())
    after = pl.scan_parquet(incoming[0]).collect_schema()
    for name, dtype in after.items():
        if (
            name in before
            and before[name] != dtype
            and dtype != pl.Null
            and before[name] != pl.Null
        ):
            raise TypeError(
                f"lake table '{table}': column '{name}' is {before[name]} but the new records "
                f"have {dtype}; cast it in the flow (map with type) or write with overwrite"
            )


class LakeIOManager(dg.ConfigurableIOManager):
    """Writes an asset's LazyFrame into the lake with the write mode its definition declares."""

    root: str = Field(description="The lake's folder: Parquet tables and the DuckDB database.")

    def handle_output(
        self, context: dg.OutputContext, obj: pl.LazyFrame | pl.DataFrame | Staged
    ) -> None:
        meta = context.definition_metadata or {}
        table = str(meta.get("flowbridge/table") or "_".join(context.asset_key.path))
        mode = str(meta.get("flowbridge/write", "append"))
        key = [k for k in str(meta.get("flowbridge/key", "")).split(",") if k]
        lake = Lake(self.root)
        data = obj if isinstance(obj, Staged) else obj.lazy()
        result = lake.write(table, data, mode, key)  # type: ignore[arg-type]
        context.add_output_metadata(
            {
                "dagster/row_count": result.rows_in_table,
                "rows_written": result.rows_written,
                "write_mode": mode,
                "destination": f"duckdb://{lake.database}#{table}",
                "parquet": dg.MetadataValue.path(str(result.version)),
                "bytes": result.bytes,
                "dagster/column_schema": table_schema(lake.scan(table).collect_schema()),
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        meta = context.upstream_output.definition_metadata if context.upstream_output else {}
        table = str((meta or {}).get("flowbridge/table") or "_".join(context.asset_key.path))
        return Lake(self.root).scan(table)
