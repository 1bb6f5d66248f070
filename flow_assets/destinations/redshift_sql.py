"""The SQL of the Redshift destination: DDL from a frame's schema, COPY, merge by key.

The same statements run on Redshift and on PostgreSQL (the stand-in in tests); only loading
the staged files differs (COPY from S3 there, COPY FROM STDIN here). Every identifier quoted.
"""

from collections.abc import Sequence

import polars as pl

TYPES: dict[type[pl.DataType], str] = {
    pl.String: "VARCHAR(65535)",
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Float64: "DOUBLE PRECISION",
    pl.Boolean: "BOOLEAN",
    pl.Date: "DATE",
}


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    for kind, name in TYPES.items():
        if isinstance(dtype, kind):
            return name
    raise TypeError(f"no Redshift type for {dtype}; cast it in the flow (map with type)")


def table_name(schema: str, table: str) -> str:
    return f"{quote(schema)}.{quote(table)}"


def create_table(schema: str, table: str, columns: pl.Schema) -> list[str]:
    cols = ", ".join(f"{quote(n)} {sql_type(t)}" for n, t in columns.items())
    return [
        f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}",
        f"CREATE TABLE IF NOT EXISTS {table_name(schema, table)} ({cols})",
    ]


def add_columns(schema: str, table: str, columns: pl.Schema, existing: Sequence[str]) -> list[str]:
    """New source fields become new columns; existing ones are left as they are."""
    have = {c.lower() for c in existing}
    return [
        f"ALTER TABLE {table_name(schema, table)} ADD COLUMN {quote(n)} {sql_type(t)}"
        for n, t in columns.items()
        if n.lower() not in have
    ]


def copy_from_s3(stage: str, manifest_url: str, iam_role: str) -> str:
    return (
        f"COPY {quote(stage)} FROM {literal(manifest_url)} IAM_ROLE {literal(iam_role)} "
        "FORMAT AS PARQUET MANIFEST"
    )


def merge(
    schema: str, table: str, stage: str, columns: Sequence[str], mode: str, key: Sequence[str]
) -> list[str]:
    """After the stage table is loaded: replace matching keys (upsert), or everything
    (overwrite), then insert. The caller runs these with the load in one transaction."""
    target = table_name(schema, table)
    cols = ", ".join(quote(c) for c in columns)
    statements = []
    if mode == "upsert":
        on = " AND ".join(f"{target}.{quote(k)} = {quote(stage)}.{quote(k)}" for k in key)
        statements.append(f"DELETE FROM {target} USING {quote(stage)} WHERE {on}")
    elif mode == "overwrite":
        statements.append(f"DELETE FROM {target}")
    statements.append(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {quote(stage)}")
    return statements


def create_stage(stage: str, columns: pl.Schema) -> str:
    """The stage table has the staged Parquet's columns in the Parquet's order: Redshift's COPY
    maps Parquet columns by position, so a copy of the target (LIKE) would put a column added
    later, or one the source no longer sends, in the wrong place."""
    cols = ", ".join(f"{quote(n)} {sql_type(t)}" for n, t in columns.items())
    return f"CREATE TEMP TABLE {quote(stage)} ({cols})"
