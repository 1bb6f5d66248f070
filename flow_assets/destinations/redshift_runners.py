"""Running the Redshift destination's SQL: through the Data API, or over the PostgreSQL wire
protocol (PostgreSQL cannot COPY from S3, so there the staged files are read back and loaded
with COPY FROM STDIN)."""

import io
import time
from dataclasses import dataclass
from typing import Any

import polars as pl

from flow_assets.connectors.aws import aws_client
from flow_assets.connectors.errors import ConnectorError
from flow_assets.connectors.redshift import RedshiftConnection
from flow_assets.destinations.redshift_sql import copy_from_s3, literal, quote


@dataclass(frozen=True)
class StagedLoad:
    """Parquet files staged in S3 for one load, and the Redshift manifest naming them."""

    stage_table: str
    bucket: str
    keys: list[str]
    manifest_url: str
    iam_role: str
    columns: list[str]


class DataApiRunner:
    """Statements through boto3 `redshift-data`; a batch runs as one transaction."""

    def __init__(self, conn: RedshiftConnection):
        self.conn = conn
        self.client = aws_client("redshift-data", conn.region_name, conn.endpoint_url)

    def _target(self) -> dict[str, str]:
        c = self.conn
        target = {"Database": c.database}
        if c.workgroup_name:
            target["WorkgroupName"] = c.workgroup_name
        if c.cluster_identifier:
            target["ClusterIdentifier"] = c.cluster_identifier
        if c.db_user:
            target["DbUser"] = c.db_user
        if c.secret_arn:
            target["SecretArn"] = c.secret_arn
        return target

    def _wait(self, statement_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.conn.statement_timeout_s
        while True:
            answer = self.client.describe_statement(Id=statement_id)
            if answer["Status"] == "FINISHED":
                return answer
            if answer["Status"] in ("FAILED", "ABORTED"):
                raise ConnectorError(
                    f"connection '{self.conn.connection_name}': Redshift: {answer.get('Error')}"
                )
            if time.monotonic() > deadline:
                self.client.cancel_statement(Id=statement_id)
                raise ConnectorError(
                    f"connection '{self.conn.connection_name}': Redshift statement "
                    f"{statement_id} still {answer['Status']} after "
                    f"{self.conn.statement_timeout_s} s; cancelled (statement_timeout_s)"
                )
            time.sleep(0.5)

    def columns(self, schema: str, table: str) -> list[str]:
        sql = (
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_schema = {literal(schema)} AND table_name = {literal(table)}"
        )
        answer = self._wait(self.client.execute_statement(Sql=sql, **self._target())["Id"])
        if not answer.get("HasResultSet"):
            return []
        rows = self.client.get_statement_result(Id=answer["Id"])["Records"]
        return [row[0]["stringValue"] for row in rows]

    def transaction(self, before: list[str], load: StagedLoad | None, after: list[str]) -> None:
        sqls = [*before]
        if load is not None:
            sqls.append(copy_from_s3(load.stage_table, load.manifest_url, load.iam_role))
        sqls += after
        self._wait(self.client.batch_execute_statement(Sqls=sqls, **self._target())["Id"])


class PostgresRunner:
    """Statements over the wire protocol with psycopg; the staged files are read back from S3
    and loaded with COPY FROM STDIN (PostgreSQL cannot COPY from S3)."""

    def __init__(self, conn: RedshiftConnection):
        self.conn = conn
        self.s3: Any = None  # set by the caller that staged the files

    def _connect(self):  # noqa: ANN202
        import psycopg

        c = self.conn
        return psycopg.connect(
            host=c.host, port=c.port, user=c.user, password=c.password, dbname=c.database
        )

    def columns(self, schema: str, table: str) -> list[str]:
        with self._connect() as pg:
            rows = pg.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                [schema, table],
            ).fetchall()
        return [r[0] for r in rows]

    def transaction(self, before: list[str], load: StagedLoad | None, after: list[str]) -> None:
        with self._connect() as pg, pg.transaction():
            for sql in before:
                pg.execute(sql)
            if load is not None:
                cols = ", ".join(quote(c) for c in load.columns)
                copy = (
                    f"COPY {quote(load.stage_table)} ({cols}) FROM STDIN (FORMAT csv, NULL '\\N')"
                )
                with pg.cursor().copy(copy) as writer:
                    for key in load.keys:
                        body = self.s3.get_object(Bucket=load.bucket, Key=key)["Body"].read()
                        frame = pl.read_parquet(io.BytesIO(body)).select(load.columns)
                        writer.write(frame.write_csv(include_header=False, null_value="\\N"))
            for sql in after:
                pg.execute(sql)


def runner_for(conn: RedshiftConnection) -> DataApiRunner | PostgresRunner:
    return PostgresRunner(conn) if conn.mode == "postgres" else DataApiRunner(conn)
