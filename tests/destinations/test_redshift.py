"""The Redshift destination: staged through moto S3, merged into PostgreSQL (the stand-in)."""

import polars as pl
import psycopg
import pytest

from flow_assets.destinations import redshift_sql as sql
from tests.conftest import failure_message, live_opportunities, materialization, run_flow

FLOW = """\
source:
  connection: salesforce_sandbox
  object: Opportunity
  fields: [Id, Name, Amount, StageName, CloseDate, IsWon, Email__c, SystemModstamp]
tasks:
  - map: {Amount: amount_usd}
  - mask: {field: Email__c, how: sha256}
destination:
  connector: redshift
  write: upsert
  key: [Id]
  redshift: {connection: test_warehouse, schema: sales, table: opportunities}
"""
FULL = {"flowbridge/full_refresh": "true"}


@pytest.fixture
def warehouse(project, aws, postgres):
    aws("s3").create_bucket(Bucket="flowbridge-staging")
    connections = project.flows_dir / "connections.yaml"
    connections.write_text(
        connections.read_text()
        + f"""
test_warehouse:
  connector: redshift
  mode: postgres
  host: {postgres["host"]}
  port: {postgres["port"]}
  user: postgres
  database: postgres
  staging_connection: aws_default
  staging_bucket: flowbridge-staging
  iam_role: arn:aws:iam::123456789012:role/redshift-copy
"""
    )
    (project.flows_dir / "to_redshift.yaml").write_text(FLOW)
    with psycopg.connect(
        host=postgres["host"],
        port=postgres["port"],
        user="postgres",
        dbname="postgres",
        autocommit=True,
    ) as pg:
        pg.execute("DROP SCHEMA IF EXISTS sales CASCADE")
    return project, postgres, aws("s3")


def rows(postgres, query: str) -> pl.DataFrame:
    with psycopg.connect(
        host=postgres["host"], port=postgres["port"], user="postgres", dbname="postgres"
    ) as pg:
        cur = pg.execute(query)
        return pl.DataFrame(cur.fetchall(), schema=[d.name for d in cur.description], orient="row")


def test_flow_merges_into_the_warehouse_by_key(warehouse, instance, sf):
    project, postgres, s3 = warehouse
    first = run_flow(project, instance, "to_redshift", **FULL)
    assert first.success, failure_message(first)
    second = run_flow(project, instance, "to_redshift", **FULL)
    assert second.success, failure_message(second)

    table = rows(postgres, "SELECT * FROM sales.opportunities")
    truth = live_opportunities(sf)
    assert (
        table.height
        == truth.height
        == materialization(first, "to_redshift", "records")["records_loaded"]
    )
    assert table["Id"].is_unique().all()
    joined = table.join(truth, on="Id")
    amounts = joined.filter(pl.col("Amount").is_not_null())
    assert (amounts["amount_usd"] == amounts["Amount"]).all()
    assert (
        joined.filter(pl.col("Amount").is_null())["amount_usd"].null_count()
        == joined["Amount"].null_count()
    )
    assert (joined["CloseDate_right"] == joined["CloseDate"]).all()
    assert not set(table["Email__c"].drop_nulls()) & set(truth["Email__c"].drop_nulls())
    types = dict(
        rows(
            postgres,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'opportunities'",
        ).iter_rows()
    )
    assert types["SystemModstamp"] == "timestamp with time zone"
    assert types["IsWon"] == "boolean" and types["amount_usd"] == "double precision"
    # The staged copy is removed once loaded.
    assert s3.list_objects_v2(Bucket="flowbridge-staging").get("KeyCount", 0) == 0


def test_a_new_source_field_becomes_a_new_column(warehouse, instance, sf):
    project, postgres, _ = warehouse
    assert run_flow(project, instance, "to_redshift", **FULL).success
    flow = project.flows_dir / "to_redshift.yaml"
    flow.write_text(
        flow.read_text().replace(
            "Email__c, SystemModstamp]", "Email__c, Probability, SystemModstamp]"
        )
    )
    result = run_flow(project, instance, "to_redshift", **FULL)
    assert result.success, failure_message(result)
    assert materialization(result, "to_redshift", "records")["columns_added"] == 1
    table = rows(postgres, 'SELECT "Probability" FROM sales.opportunities')
    assert table.height == live_opportunities(sf).height
    assert table["Probability"].null_count() < table.height


def test_generated_sql():
    columns = pl.Schema(
        {"Id": pl.String(), "n": pl.Int64(), "at": pl.Datetime("us", "UTC"), 'we"ird': pl.Boolean()}
    )
    assert sql.create_table("sales", "t", columns)[1] == (
        'CREATE TABLE IF NOT EXISTS "sales"."t" ("Id" VARCHAR(65535), "n" BIGINT, '
        '"at" TIMESTAMPTZ, "we""ird" BOOLEAN)'
    )
    assert sql.copy_from_s3("stage", "s3://b/k/redshift.manifest", "arn:aws:iam::1:role/r") == (
        "COPY \"stage\" FROM 's3://b/k/redshift.manifest' IAM_ROLE 'arn:aws:iam::1:role/r' "
        "FORMAT AS PARQUET MANIFEST"
    )
    assert sql.merge("sales", "t", "stage", ["Id", "n"], "upsert", ["Id"]) == [
        'DELETE FROM "sales"."t" USING "stage" WHERE "sales"."t"."Id" = "stage"."Id"',
        'INSERT INTO "sales"."t" ("Id", "n") SELECT "Id", "n" FROM "stage"',
    ]
    assert sql.add_columns("sales", "t", columns, ["id", "n", "at"]) == [
        'ALTER TABLE "sales"."t" ADD COLUMN "we""ird" BOOLEAN'
    ]
