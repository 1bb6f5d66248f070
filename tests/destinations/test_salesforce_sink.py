"""The Salesforce destination against a sandbox of its own (writes change its data): sObject
Collections writes read back through the sandbox's data and its query API, 200 records a call,
refused records in the error location with Salesforce's statusCode; and the round trip
Salesforce -> lake -> (edited) -> S3 -> Salesforce, upserting by external id."""

import io
import json

import dagster as dg
import polars as pl
import pytest
import requests
from polars.testing import assert_frame_equal
from pydantic import ValidationError

from flow_assets.connectors.errors import ConnectorError
from flow_assets.connectors.salesforce import SalesforceConnection
from flow_assets.destinations.lake import Lake
from flow_assets.destinations.salesforce_sink import SalesforceIOManager
from flow_assets.destinations.staging import ParquetBatchWriter
from flow_assets.sandbox import SalesforceSandbox
from flow_assets.spec.models import Destination
from tests.conftest import CLIENT_ID, CLIENT_SECRET, copy_project, materialization, run_flow

RECORDS = 300
EXT = "External_Id__c"
FIELDS = [EXT, "Name", "Amount", "StageName", "CloseDate"]
STAMPS = ["LastModifiedDate", "SystemModstamp"]  # moved by every write, as in Salesforce
BUCKET = "flowbridge-example-outbound"  # the example flow's
FLOW = "s3_to_salesforce_upsert"


@pytest.fixture
def own(monkeypatch):
    """A sandbox these tests may change, caches on, the example connection pointing at it."""
    with SalesforceSandbox(
        records=RECORDS, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, page_cache_mb=16
    ) as sb:
        monkeypatch.setenv("SALESFORCE_SANDBOX_URL", sb.url)
        monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", CLIENT_SECRET)
        yield sb


def write(sb, tmp_path, frame: pl.DataFrame, how: str, key: str = "") -> dict:
    """The destination's handle_output on `frame`, staged as a flow would; its metadata."""
    folder = tmp_path / f"staged-{len(list(tmp_path.glob('staged-*')))}"
    with ParquetBatchWriter(folder, frame.schema) as writer:
        writer.write(frame)
    manager = SalesforceIOManager(
        connection=SalesforceConnection(
            login_url=sb.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        ),
        error_root=str(tmp_path / "lake"),
    )
    settings = {"connection": "salesforce_sandbox", "object": "Opportunity"}
    context = dg.build_output_context(
        asset_key=dg.AssetKey(["f", "records"]), run_id="run-1",
        definition_metadata={"flowbridge/settings": json.dumps(settings),
                             "flowbridge/write": how, "flowbridge/key": key},
    )  # fmt: skip
    manager.handle_output(context, writer.staged())
    return {k: getattr(v, "value", v) for k, v in context.get_logged_metadata().items()}


def rejected(tmp_path, table: str = "f") -> pl.DataFrame:
    return Lake(tmp_path / "lake").scan(f"{table}__rejected").collect()


def query(sb, soql: str, resource: str = "query") -> pl.DataFrame:
    """Records as the REST query API answers them (one page: the tests stay under 2000)."""
    answer = requests.get(
        f"{sb.url}/services/data/v59.0/{resource}/", params={"q": soql}, timeout=30,
        headers={"Authorization": f"Bearer {sb.issue_access_token()}"},
    )  # fmt: skip
    answer.raise_for_status()
    body = answer.json()
    assert body["done"]
    return pl.DataFrame(
        [{k: v for k, v in r.items() if k != "attributes"} for r in body["records"]]
    )


def by_ext(sb) -> pl.DataFrame:
    return sb.frame("Opportunity").filter(~pl.col("IsDeleted")).sort(EXT)


def edits(sb, existing: int, new: int) -> pl.DataFrame:
    """New Amounts (and Names) for the first `existing` records, and `new` new records."""
    old = by_ext(sb).head(existing).select(FIELDS)
    changed = old.with_columns(
        (pl.int_range(pl.len()) * 10.25 + 1).alias("Amount"),
        (pl.col("Name") + " (edited)").alias("Name"),
    )
    fresh = pl.DataFrame(
        {
            EXT: [f"NEW-{i:05d}" for i in range(new)],
            "Name": [f"New deal {i}" for i in range(new)],
            "Amount": [1000.5 + i for i in range(new)],
            "StageName": ["Prospecting"] * new,
            "CloseDate": [by_ext(sb)["CloseDate"][0]] * new,
        },
        schema=changed.schema,
    )
    return pl.concat([changed, fresh])


def assert_holds(sb, sent: pl.DataFrame) -> None:
    """The sandbox holds exactly the values sent, in its data and through its query API."""
    held = by_ext(sb).filter(pl.col(EXT).is_in(sent[EXT].implode())).select(FIELDS)
    assert_frame_equal(held, sent.sort(EXT))
    answered = query(sb, f"SELECT {', '.join(FIELDS)} FROM Opportunity ORDER BY {EXT}")
    answered = answered.filter(pl.col(EXT).is_in(sent[EXT].implode())).with_columns(
        pl.col("CloseDate").str.to_date(), pl.col("Amount").cast(pl.Float64)
    )
    assert_frame_equal(answered.select(FIELDS), sent.sort(EXT))


def test_upsert_by_external_id_writes_exactly_and_a_rerun_changes_nothing(own, tmp_path):
    sent = edits(own, existing=230, new=40)
    untouched = by_ext(own).filter(~pl.col(EXT).is_in(sent[EXT].implode()))
    meta = write(own, tmp_path, sent, "upsert", EXT)
    assert (meta["rows_written"], meta["rows_created"], meta["batches"]) == (270, 40, 2)
    assert meta["rows_refused_by_destination"] == 0
    assert own.stats()["collections_upsert"] == 2  # 270 records: 200 + 70
    assert own.frame("Opportunity").height == RECORDS + 40
    assert_holds(own, sent)
    assert_frame_equal(by_ext(own).filter(~pl.col(EXT).is_in(sent[EXT].implode())), untouched)

    before = by_ext(own).drop(STAMPS)
    again = write(own, tmp_path, sent, "upsert", EXT)
    assert (again["rows_written"], again["rows_created"]) == (270, 0)
    assert_frame_equal(by_ext(own).drop(STAMPS), before)  # no duplicates, no other change


def test_batches_of_200_records_a_call(own, tmp_path):
    sent = edits(own, existing=RECORDS, new=101)  # 401 records
    own.reset_stats()
    meta = write(own, tmp_path, sent, "upsert", EXT)
    assert meta["batches"] == 3 and own.stats()["collections_upsert"] == 3
    assert_holds(own, sent)


def test_records_salesforce_refuses_land_in_the_error_location(own, tmp_path):
    sent = edits(own, existing=2, new=3).with_columns(
        pl.when(pl.col(EXT) == "NEW-00001").then(None).otherwise(pl.col("Name")).alias("Name")
    )
    meta = write(own, tmp_path, sent, "upsert", EXT)
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (4, 1)
    bad = rejected(tmp_path)
    assert bad[EXT].to_list() == ["NEW-00001"]
    assert bad["_fb_reason"][0] == (
        "REQUIRED_FIELD_MISSING: Required fields are missing: [Name] (fields: Name)"
    )
    assert_holds(own, sent.filter(pl.col(EXT) != "NEW-00001"))
    assert by_ext(own).filter(pl.col(EXT) == "NEW-00001").height == 0

    # insert: an external id that exists is a duplicate; the reason carries no record values
    taken = sent.filter(pl.col(EXT) == "NEW-00000").with_columns(pl.lit("Another").alias("Name"))
    meta = write(own, tmp_path, taken, "insert")
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (0, 1)
    reason = rejected(tmp_path).filter(pl.col(EXT) == "NEW-00000")["_fb_reason"].item()
    assert reason.startswith("DUPLICATE_VALUE: duplicate value found: External_Id__c")
    assert "Another" not in reason and "NEW-00000" not in reason


def test_insert_update_and_delete(own, tmp_path):
    new = edits(own, existing=0, new=3).with_columns(pl.Series(EXT, ["INS-1", "INS-2", "INS-3"]))
    assert write(own, tmp_path, new, "insert")["rows_written"] == 3
    assert_holds(own, new)
    ids = by_ext(own).filter(pl.col(EXT).str.starts_with("INS-"))["Id"]
    assert ids.to_list() == [f"006Hs0000000{n}IAA" for n in (301, 302, 303)]

    update = pl.DataFrame({"Id": ids[:2], "Amount": [7.0, 8.0]})
    assert write(own, tmp_path, update, "update")["rows_written"] == 2
    assert by_ext(own).filter(pl.col("Id").is_in(ids.implode()))["Amount"].to_list() == [
        7.0,
        8.0,
        1002.5,
    ]

    gone = pl.DataFrame({"Id": [ids[2], ids[2]]})  # the second is deleted already
    meta = write(own, tmp_path, gone, "delete")
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (1, 1)
    assert rejected(tmp_path)["_fb_reason"].to_list() == ["ENTITY_IS_DELETED: entity is deleted"]
    soql = f"SELECT Id FROM Opportunity WHERE Id = '{ids[2]}'"
    assert query(own, soql).height == 0 and query(own, soql, "queryAll").height == 1


def test_fields_salesforce_cannot_write_fail_the_run_before_any_write(own, tmp_path):
    own.reset_stats()
    stamped = by_ext(own).head(3).select(EXT, "Amount", "CreatedDate")
    with pytest.raises(ConnectorError, match="Opportunity.CreatedDate is read-only"):
        write(own, tmp_path, stamped, "upsert", EXT)
    with pytest.raises(ConnectorError, match="has no field 'Amonut'.*Amount"):
        write(own, tmp_path, stamped.select(EXT, Amonut="Amount"), "upsert", EXT)
    with pytest.raises(ConnectorError, match="needs the field Id"):
        write(own, tmp_path, stamped.select(EXT, "Amount"), "update")
    assert own.stats()["collections_upsert"] + own.stats()["collections"] == 0


def test_the_sandbox_refuses_more_than_200_records_a_call(own):
    answer = requests.post(
        f"{own.url}/services/data/v59.0/composite/sobjects", timeout=30,
        headers={"Authorization": f"Bearer {own.issue_access_token()}"},
        json={"records": [{"attributes": {"type": "Opportunity"}, "Name": "x"}] * 201},
    )  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert own.frame("Opportunity").height == RECORDS


@pytest.mark.parametrize(
    ("destination", "error"),
    [
        ({"connector": "lake", "write": "insert"}, "is for connector salesforce"),
        ({"connector": "salesforce", "write": "append"}, "writes insert, upsert, update"),
        ({"connector": "salesforce", "write": "upsert", "key": ["Id"]}, "its external id field"),
    ],
)
def test_flow_file_errors(destination, error):
    block = {"connection": "salesforce_sandbox", "object": "Opportunity",
             "external_id_field": EXT}  # fmt: skip
    with pytest.raises(ValidationError, match=error):
        Destination.model_validate(
            {**destination, **({"salesforce": block} if destination["connector"] != "lake" else {})}
        )


TO_LAKE = f"""\
name: opportunities_to_lake
source:
  connection: salesforce_sandbox
  object: Opportunity
  fields: [{", ".join(FIELDS)}]
destination: {{connector: lake, write: overwrite}}
"""


def test_salesforce_to_lake_to_s3_and_back(own, tmp_path, aws, instance):
    """The issue's bi-directional test: pull to the lake, edit K records there with Polars,
    put them in S3 as Parquet, and the example flow upserts them back by external id."""
    project = copy_project(tmp_path)
    (project.flows_dir / "opportunities_to_lake.yaml").write_text(TO_LAKE)
    assert run_flow(project, instance, "opportunities_to_lake").success
    lake = Lake(project.lake_dir).scan("opportunities_to_lake").collect().select(FIELDS)
    assert_frame_equal(lake.sort(EXT), by_ext(own).select(FIELDS))

    k = 25
    edited = lake.sort(EXT).with_columns(
        pl.when(pl.int_range(pl.len()) < k)
        .then(pl.col("Amount").fill_null(0) * 2 + 1)
        .otherwise(pl.col("Amount"))
        .alias("Amount")
    )
    refused = edited.head(1).with_columns(pl.lit("NEW-1").alias(EXT), pl.lit(None).alias("Name"))
    s3 = aws("s3")
    s3.create_bucket(Bucket=BUCKET)
    buffer = io.BytesIO()
    pl.concat([edited, refused]).write_parquet(buffer)
    s3.put_object(Bucket=BUCKET, Key="opportunities/part-0.parquet", Body=buffer.getvalue())

    result = run_flow(project, instance, FLOW)
    assert result.success
    meta = materialization(result, FLOW, "records")
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (RECORDS, 1)
    assert by_ext(own).select(FIELDS).equals(edited)  # exactly the edited values, nothing more
    assert by_ext(own).head(k)["Amount"].to_list() != lake.sort(EXT).head(k)["Amount"].to_list()
    bad = Lake(project.lake_dir).scan(f"{FLOW}__rejected").collect()
    assert bad[EXT].to_list() == ["NEW-1"]
    assert bad["_fb_reason"][0].startswith("REQUIRED_FIELD_MISSING:")

    before = by_ext(own).drop(STAMPS)
    assert run_flow(project, instance, FLOW).success
    assert_frame_equal(by_ext(own).drop(STAMPS), before)  # a re-run changes nothing
    assert own.frame("Opportunity").height == RECORDS
