"""The Redshift destination: staged through moto S3, merged into PostgreSQL (the stand-in), and
sent through the Data API to moto's redshift-data."""

import json
import re
import uuid

import polars as pl
import psycopg
import pytest
from botocore.awsrequest import AWSResponse

from flow_assets.destinations import redshift_runners
from flow_assets.destinations import redshift_sql as sql
from tests.conftest import (
    add_postgres_warehouse,
    failure_message,
    live_opportunities,
    materialization,
    run_flow,
)

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
BUCKET = "flowbridge-staging"
IAM_ROLE = "arn:aws:iam::123456789012:role/redshift-copy"


@pytest.fixture
def warehouse(project, aws, postgres):
    """A PostgreSQL warehouse; its staging bucket keeps versions, so the files a run staged and
    deleted can still be read back."""
    aws("s3").create_bucket(Bucket=BUCKET)
    aws("s3").put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    add_postgres_warehouse(project, postgres, "test_warehouse", BUCKET, iam_role=IAM_ROLE)
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


def add_setting(project, line: str) -> None:
    """A setting for test_warehouse, the last connection in the file."""
    connections = project.flows_dir / "connections.yaml"
    connections.write_text(connections.read_text() + f"  {line}\n")


def staged_versions(s3) -> dict[str, str]:
    """Every object ever staged in the bucket (deleted or not), with its version id."""
    versions = s3.list_object_versions(Bucket=BUCKET).get("Versions", [])
    return {v["Key"]: v["VersionId"] for v in versions}


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
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


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
    # COPY from Parquet maps columns by position: the stage follows the Parquet, not the
    # target (whose added columns come last).
    assert sql.create_stage("stage", pl.Schema({"n": pl.Int64(), "Id": pl.String()})) == (
        'CREATE TEMP TABLE "stage" ("n" BIGINT, "Id" VARCHAR(65535))'
    )


@pytest.mark.parametrize("with_key", [True, False], ids=["sse-kms", "sse-s3"])
def test_staged_files_are_encrypted(warehouse, instance, aws, with_key):
    """Read back from the versioned bucket after the run deleted them: every staged Parquet
    file and both manifests, under the connection's KMS key (the alias resolved to its ARN),
    or SSE-S3 without one."""
    project, _, s3 = warehouse
    expected = ("AES256", None)
    if with_key:
        key = aws("kms").create_key()["KeyMetadata"]
        aws("kms").create_alias(AliasName="alias/flowbridge-staging", TargetKeyId=key["KeyId"])
        add_setting(project, "staging_kms_key_id: alias/flowbridge-staging")
        expected = ("aws:kms", key["Arn"])
    result = run_flow(project, instance, "to_redshift", **FULL)
    assert result.success, failure_message(result)

    staged = staged_versions(s3)
    # The Parquet file, the writer's manifest (.json) and COPY's manifest (.manifest).
    assert sorted(k.rsplit(".", 1)[-1] for k in staged) == ["json", "manifest", "parquet"], staged
    for name, version in staged.items():
        head = s3.head_object(Bucket=BUCKET, Key=name, VersionId=version)
        assert (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == expected, name


def test_a_missing_staging_kms_key_fails_before_anything_is_staged(warehouse, instance):
    project, postgres, s3 = warehouse
    add_setting(project, "staging_kms_key_id: alias/no-such-key")
    result = run_flow(project, instance, "to_redshift", **FULL)
    assert not result.success
    message = failure_message(result)
    assert "connections.yaml: test_warehouse.staging_kms_key_id" in message, message
    assert "KMS key 'alias/no-such-key' not found" in message, message
    assert staged_versions(s3) == {}
    assert rows(postgres, "SELECT nspname FROM pg_namespace WHERE nspname = 'sales'").height == 0


class MotoDataApi:
    """moto's redshift-data (5.2) on the runner's client, with its two gaps filled in plain
    sight by botocore hooks, which run after botocore has validated and serialized each call.
    moto records the statements it is sent but runs none, so they stay STARTED: once moto has
    answered, they are reported FINISHED. moto has no BatchExecuteStatement (HTTP 500, not
    implemented): a batch is answered here and kept as it would go on the wire."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []  # every call, as botocore serialized it
        self.executed: list[str] = []  # the ids moto gave to ExecuteStatement
        self.batches: dict[str, dict] = {}

    def attach(self, client):
        client.meta.events.register("before-call.redshift-data", self._before_call)
        client.meta.events.register("after-call.redshift-data", self._after_call)
        return client

    def _before_call(self, model, params, **_):
        body = json.loads(params["body"])
        self.requests.append((model.name, body))
        if model.name == "BatchExecuteStatement":
            batch = str(uuid.uuid4())
            self.batches[batch] = body
            return AWSResponse(None, 200, {}, None), {"Id": batch, "Database": body["Database"]}
        if model.name == "DescribeStatement" and body["Id"] in self.batches:
            answer = {"Id": body["Id"], "Status": "FINISHED", "HasResultSet": False}
            return AWSResponse(None, 200, {}, None), answer
        return None

    def _after_call(self, model, parsed, **_):
        if model.name == "ExecuteStatement":
            self.executed.append(parsed["Id"])
        if model.name == "DescribeStatement" and parsed.get("Status") == "STARTED":
            parsed["Status"] = "FINISHED"


# Each target: its settings in connections.yaml, and the parameters every call must carry.
TARGETS = {
    "serverless": ("workgroup_name: flowbridge", {"WorkgroupName": "flowbridge"}),
    "cluster": (
        "cluster_identifier: flowbridge-cluster\n  db_user: loader",
        {"ClusterIdentifier": "flowbridge-cluster", "DbUser": "loader"},
    ),
}


@pytest.mark.parametrize("target", TARGETS)
def test_the_data_api_path_on_moto(warehouse, instance, aws, moto_endpoint, monkeypatch, target):
    """The columns query and one batch (one transaction): CREATE, stage, COPY with the
    manifest and role, merge, in order; each call accepted by botocore, and by moto where moto
    has the call."""
    project, _, s3 = warehouse
    settings, params = TARGETS[target]
    connections = project.flows_dir / "connections.yaml"
    connections.write_text(
        connections.read_text()
        + f"test_data_api:\n  connector: redshift\n  mode: data_api\n  {settings}\n"
        + f"  endpoint_url: {moto_endpoint}\n  staging_connection: aws_default\n"
        + f"  staging_bucket: {BUCKET}\n  iam_role: {IAM_ROLE}\n"
    )
    (project.flows_dir / "to_redshift.yaml").write_text(
        FLOW.replace("test_warehouse", "test_data_api")
    )
    moto = MotoDataApi()
    client = redshift_runners.aws_client
    monkeypatch.setattr(
        redshift_runners, "aws_client", lambda *a, **k: moto.attach(client(*a, **k))
    )

    result = run_flow(project, instance, "to_redshift", **FULL)
    assert result.success, failure_message(result)

    calls = [name for name, _ in moto.requests]
    assert calls == [
        "ExecuteStatement", "DescribeStatement", "BatchExecuteStatement", "DescribeStatement"
    ]  # fmt: skip
    for name, body in moto.requests:
        if name != "DescribeStatement":  # botocore adds a ClientToken; the rest is the runner's
            sent = {k: v for k, v in body.items() if k not in ("Sql", "Sqls", "ClientToken")}
            assert sent == {"Database": "dev", **params}
    # What moto recorded (it drops WorkgroupName). It answers HasResultSet false for every
    # statement, so the runner reads no rows and takes the table for new: moto's canned rows
    # (a number, a street, a city) could not pass for column names anyway.
    (columns_query,) = moto.executed
    recorded = aws("redshift-data").describe_statement(Id=columns_query)
    assert recorded["QueryString"] == (
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'sales' AND table_name = 'opportunities'"
    )
    assert recorded["Database"] == "dev"
    assert recorded.get("ClusterIdentifier") == params.get("ClusterIdentifier")
    assert recorded.get("DbUser") == params.get("DbUser")

    staged = staged_versions(s3)
    (part,) = [k for k in staged if k.endswith(".parquet")]
    (manifest,) = [k for k in staged if k.endswith("/redshift.manifest")]
    body = s3.get_object(Bucket=BUCKET, Key=part, VersionId=staged[part])["Body"].read()
    columns = pl.read_parquet_schema(body)
    entries = json.loads(
        s3.get_object(Bucket=BUCKET, Key=manifest, VersionId=staged[manifest])["Body"].read()
    )["entries"]
    assert entries == [
        {"url": f"s3://{BUCKET}/{part}", "mandatory": True, "meta": {"content_length": len(body)}}
    ]
    (batch,) = moto.batches.values()
    stage = re.search(r'CREATE TEMP TABLE "(fb_stage_[0-9a-f]{12})"', batch["Sqls"][2])[1]
    assert batch["Sqls"] == [
        *sql.create_table("sales", "opportunities", columns),
        sql.create_stage(stage, columns),
        f"COPY \"{stage}\" FROM 's3://{BUCKET}/{manifest}' IAM_ROLE '{IAM_ROLE}' "
        "FORMAT AS PARQUET MANIFEST",
        *sql.merge("sales", "opportunities", stage, list(columns), "upsert", ["Id"]),
    ]
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0  # removed once loaded


def test_a_statement_that_never_finishes_is_cancelled(aws, moto_endpoint):
    """moto's statements stay STARTED: the runner gives up at its deadline and cancels."""
    from flow_assets.connectors.errors import ConnectorError
    from flow_assets.connectors.redshift import RedshiftConnection
    from flow_assets.destinations.redshift_runners import DataApiRunner

    conn = RedshiftConnection(
        workgroup_name="analytics", endpoint_url=moto_endpoint, staging_connection="aws",
        staging_bucket=BUCKET, statement_timeout_s=1, connection_name="warehouse",
    )  # fmt: skip
    runner = DataApiRunner(conn)
    with pytest.raises(ConnectorError, match=r"still \w+ after 1 s; cancelled") as failed:
        runner.columns("sales", "opportunities")
    statement_id = re.search(r"statement (\S+) still", str(failed.value))[1]
    assert aws("redshift-data").describe_statement(Id=statement_id)["Status"] == "ABORTED"
