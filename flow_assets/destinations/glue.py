"""After an S3 write, the Glue Data Catalog table over it: columns, partition keys, location,
Parquet (or CSV / JSON) SerDe, and the run's partition, created or updated."""

import contextlib
from typing import Any

import polars as pl

from flow_assets.spec.models import S3Settings

HIVE_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "string",
    pl.Int64: "bigint",
    pl.Int32: "int",
    pl.Float64: "double",
    pl.Boolean: "boolean",
    pl.Date: "date",
    pl.Datetime: "timestamp",
}
FORMATS = {
    "parquet": (
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    ),
    "csv": (
        "org.apache.hadoop.mapred.TextInputFormat",
        "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
        "org.apache.hadoop.hive.serde2.OpenCSVSerde",
    ),
    "jsonl": (
        "org.apache.hadoop.mapred.TextInputFormat",
        "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
        "org.openx.data.jsonserde.JsonSerDe",
    ),
}


def hive_type(dtype: pl.DataType) -> str:
    for kind, name in HIVE_TYPES.items():
        if isinstance(dtype, kind):
            return name
    return "string"


def storage(settings: S3Settings, location: str, columns: pl.Schema) -> dict[str, Any]:
    input_format, output_format, serde = FORMATS[settings.format]
    return {
        "Columns": [{"Name": n, "Type": hive_type(t)} for n, t in columns.items()],
        "Location": location,
        "InputFormat": input_format,
        "OutputFormat": output_format,
        "SerdeInfo": {"SerializationLibrary": serde},
    }


def register(
    glue: Any, settings: S3Settings, flow: str, columns: pl.Schema, partition_prefix: str
) -> str:
    """Create or update the table, then add the run's partition; returns 'database.table'."""
    assert settings.glue is not None
    database, table = settings.glue.database, settings.glue.table or flow
    base = settings.prefix.strip("/") or flow
    location = f"s3://{settings.bucket}/{base}/"
    try:
        glue.get_database(Name=database)
    except glue.exceptions.EntityNotFoundException:
        glue.create_database(DatabaseInput={"Name": database})
    table_input = {
        "Name": table,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": settings.format, "flowbridge_flow": flow},
        "StorageDescriptor": storage(settings, location, columns),
        "PartitionKeys": [{"Name": p, "Type": "string"} for p in settings.partitioning],
    }
    try:
        glue.get_table(DatabaseName=database, Name=table)
        glue.update_table(DatabaseName=database, TableInput=table_input)
    except glue.exceptions.EntityNotFoundException:
        glue.create_table(DatabaseName=database, TableInput=table_input)
    if settings.partitioning:
        values = [part.split("=", 1)[1] for part in partition_prefix.rstrip("/").split("/")[-len(settings.partitioning):]]  # fmt: skip
        partition = {
            "Values": values,
            "StorageDescriptor": storage(
                settings, f"s3://{settings.bucket}/{partition_prefix}", columns
            ),
        }
        with contextlib.suppress(glue.exceptions.AlreadyExistsException):
            glue.create_partition(DatabaseName=database, TableName=table, PartitionInput=partition)
    return f"{database}.{table}"
