"""The embedded default destination: one DuckDB table per flow, mirrored as Parquet files.

DuckDB holds the table and makes each write one transaction (append, overwrite, or upsert by
key); after the commit the table's Parquet copy under <root>/tables/<table>/ is replaced, so
readers without DuckDB (Polars, notebooks, other engines) see the same records.
"""

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from flow_assets.destinations.staging import table_schema

WriteMode = Literal["append", "overwrite", "upsert"]
DB_FILE = "lake.duckdb"


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class WriteResult:
    table: str
    rows_written: int
    rows_in_table: int
    parquet: Path
    bytes: int


class Lake:
    """A folder with a DuckDB database and a Parquet copy of each table."""

    def __init__(self, root: str | Path, memory_limit: str = "1GB"):
        self.root = Path(root)
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

    def scan(self, table: str) -> pl.LazyFrame:
        files = sorted(self.table_dir(table).glob("part-*.parquet"))
        if not files:
            raise FileNotFoundError(f"the lake has no table '{table}' under {self.root}")
        return pl.scan_parquet(files)

    def tables(self) -> list[str]:
        base = self.root / "tables"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []

    def write(
        self,
        table: str,
        frame: pl.LazyFrame,
        mode: WriteMode = "append",
        key: Sequence[str] = (),
    ) -> WriteResult:
        folder = self.table_dir(table)
        folder.mkdir(parents=True, exist_ok=True)
        batch = folder / f".incoming-{uuid.uuid4().hex}.parquet"
        try:
            frame.sink_parquet(batch, compression="zstd")
            with self.connect() as con:
                written, total = self._merge(con, table, batch, mode, key)
                part = self._export(con, table, folder)
        finally:
            batch.unlink(missing_ok=True)
        return WriteResult(table, written, total, part, part.stat().st_size)

    def _merge(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        batch: Path,
        mode: WriteMode,
        key: Sequence[str],
    ) -> tuple[int, int]:
        t = quote(table)
        source = f"read_parquet('{_sql_path(batch)}')"
        if mode == "upsert":
            # The last record of a key within one batch wins, as a later page has newer data.
            keys = ", ".join(quote(k) for k in key)
            source = (
                f"(SELECT * EXCLUDE (__fb_row) FROM (SELECT *, row_number() OVER () AS __fb_row "
                f"FROM {source}) QUALIFY row_number() OVER (PARTITION BY {keys} "
                f"ORDER BY __fb_row DESC) = 1)"
            )
        con.execute("BEGIN TRANSACTION")
        try:
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()[0]
            written = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
            if not exists or mode == "overwrite":
                con.execute(f"CREATE OR REPLACE TABLE {t} AS SELECT * FROM {source}")
            else:
                self._add_new_columns(con, table, source)
                if mode == "upsert":
                    on = " AND ".join(f"{t}.{quote(k)} = s.{quote(k)}" for k in key)
                    con.execute(
                        f"DELETE FROM {t} WHERE EXISTS (SELECT 1 FROM {source} s WHERE {on})"
                    )
                con.execute(f"INSERT INTO {t} BY NAME SELECT * FROM {source}")
            total = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        return int(written), int(total)

    def _add_new_columns(self, con: duckdb.DuckDBPyConnection, table: str, source: str) -> None:
        existing = {row[0]: row[1] for row in con.execute(f"DESCRIBE {quote(table)}").fetchall()}
        for name, dtype, *_ in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall():
            if name not in existing:
                con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {dtype}")
            elif existing[name] != dtype and existing[name] != "NULL" and dtype != "NULL":
                raise TypeError(
                    f"lake table '{table}': column '{name}' is {existing[name]} but the new "
                    f"records have {dtype}; cast it in the flow (map with type) or overwrite"
                )

    def _export(self, con: duckdb.DuckDBPyConnection, table: str, folder: Path) -> Path:
        """Replace the table's Parquet copy: write the new file, then remove the old ones."""
        old = list(folder.glob("part-*.parquet"))
        tmp = folder / f".export-{uuid.uuid4().hex}.parquet"
        con.execute(f"COPY {quote(table)} TO '{_sql_path(tmp)}' (FORMAT parquet, COMPRESSION zstd)")
        part = folder / f"part-{uuid.uuid4().hex}.parquet"
        os.replace(tmp, part)
        for path in old:
            path.unlink(missing_ok=True)
        return part


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


class LakeIOManager(dg.ConfigurableIOManager):
    """Writes an asset's LazyFrame into the lake with the write mode its definition declares."""

    root: str = Field(description="The lake's folder: DuckDB database and Parquet tables.")

    def handle_output(self, context: dg.OutputContext, obj: pl.LazyFrame | pl.DataFrame) -> None:
        meta = context.definition_metadata or {}
        table = str(meta.get("flowbridge/table") or "_".join(context.asset_key.path))
        mode = str(meta.get("flowbridge/write", "append"))
        key = [k for k in str(meta.get("flowbridge/key", "")).split(",") if k]
        result = Lake(self.root).write(table, obj.lazy(), mode, key)  # type: ignore[arg-type]
        schema = pl.scan_parquet(result.parquet).collect_schema()
        context.add_output_metadata(
            {
                "dagster/row_count": result.rows_in_table,
                "rows_written": result.rows_written,
                "write_mode": mode,
                "destination": f"duckdb://{Lake(self.root).database}#{table}",
                "parquet": dg.MetadataValue.path(str(result.parquet)),
                "bytes": result.bytes,
                "dagster/column_schema": table_schema(schema),
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        meta = context.upstream_output.definition_metadata if context.upstream_output else {}
        table = str((meta or {}).get("flowbridge/table") or "_".join(context.asset_key.path))
        return Lake(self.root).scan(table)
