"""DynamoDB and EventBridge destinations on a real moto server, read back through boto3."""

import io
import json
from decimal import Decimal

import dagster as dg
import polars as pl
import pytest

from flow_assets.connectors.aws import AwsConnection
from flow_assets.destinations.dynamodb import DynamoDBIOManager
from flow_assets.destinations.eventbridge import EventBridgeIOManager
from flow_assets.destinations.lake import Lake
from flow_assets.destinations.s3 import published_files
from flow_assets.destinations.staging import ParquetBatchWriter
from tests.aws_faults import FaultProxy, limit_attempts
from tests.conftest import (
    failure_message,
    live_opportunities,
    materialization,
    run_flow,
    stored_cursor,
)

SOURCE = """\
source:
  connection: salesforce_sandbox
  object: Opportunity
  fields: [Id, Name, Amount, StageName, CloseDate, Email__c, SystemModstamp]
tasks:
  - filter: {field: StageName, operator: equal_to, value: Closed Won}
  - mask: {field: Email__c, how: sha256}
"""
INCREMENTAL = SOURCE.replace(
    "  fields: [Id,", "  incremental: {cursor_field: SystemModstamp, start: all}\n  fields: [Id,"
)
TO_EVENTS = (
    "destination:\n  connector: eventbridge\n  eventbridge: {connection: aws_default, "
    "event_bus: flowbridge, source: flowbridge.salesforce, detail_type: OpportunityWon}\n"
)
FULL = {"flowbridge/full_refresh": "true"}
PUT_EVENTS, BATCH_WRITE = "AWSEvents.PutEvents", "DynamoDB_20120810.BatchWriteItem"


def scan(ddb, table: str) -> list[dict]:
    items = []
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        items += page["Items"]
    return items


def to_dynamodb(table: str) -> str:
    return (
        "destination:\n  connector: dynamodb\n  write: upsert\n  key: [Id]\n"
        f"  dynamodb: {{connection: aws_default, table: {table}}}\n"
    )


def bus_to_queue(aws) -> str:
    """The flowbridge bus, with a rule sending every flowbridge.salesforce event to a queue."""
    events, sqs = aws("events"), aws("sqs")
    events.create_event_bus(Name="flowbridge")
    queue = sqs.create_queue(QueueName="opportunities")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="all",
        EventBusName="flowbridge",
        EventPattern=json.dumps({"source": ["flowbridge.salesforce"]}),
    )
    events.put_targets(Rule="all", EventBusName="flowbridge", Targets=[{"Id": "q", "Arn": arn}])
    return queue


def drain(sqs, queue: str) -> list[dict]:
    """Every event the queue holds, each received once and deleted."""
    received = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        received += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    return received


def test_flow_into_dynamodb_upserts_by_key(project, instance, sf, aws):
    (project.flows_dir / "to_dynamodb.yaml").write_text(SOURCE + to_dynamodb("opportunities"))
    first = run_flow(project, instance, "to_dynamodb", **FULL)
    assert first.success, failure_message(first)
    second = run_flow(project, instance, "to_dynamodb", **FULL)
    assert second.success, failure_message(second)

    ddb = aws("dynamodb")
    items = scan(ddb, "opportunities")
    truth = live_opportunities(sf).filter(pl.col("StageName") == "Closed Won")
    assert (
        len(items)
        == truth.height
        == materialization(first, "to_dynamodb", "records")["records_loaded"]
    )
    by_id = {i["Id"]["S"]: i for i in items}
    for row in truth.head(50).iter_rows(named=True):
        got = by_id[row["Id"]]
        if row["Amount"] is None:
            assert "Amount" not in got
        else:
            assert Decimal(got["Amount"]["N"]) == Decimal(repr(row["Amount"]))
        assert got["CloseDate"]["S"] == row["CloseDate"].isoformat()
        assert got["Email__c"]["S"] != row["Email__c"]  # masked


def test_flow_into_eventbridge_reaches_a_queue(project, instance, sf, aws):
    queue = bus_to_queue(aws)
    (project.flows_dir / "to_events.yaml").write_text(SOURCE + TO_EVENTS)
    result = run_flow(project, instance, "to_events")
    assert result.success, failure_message(result)
    loaded = materialization(result, "to_events", "records")["records_loaded"]

    received = drain(aws("sqs"), queue)
    assert len(received) == loaded
    assert {e["detail-type"] for e in received} == {"OpportunityWon"}
    truth = live_opportunities(sf).filter(pl.col("StageName") == "Closed Won")
    assert sorted(e["detail"]["Id"] for e in received) == sorted(truth["Id"])


@pytest.fixture
def oversized(tmp_path):
    """Three records, one far too large for either service."""
    frame = pl.DataFrame(
        {"Id": ["a", "b", "c"], "Note": ["x", "y" * 600_000, "z"], "Amount": [1.5, 2.0, None]}
    )
    with ParquetBatchWriter(tmp_path / "staged", frame.schema) as writer:
        writer.write(frame)
    return writer.staged(), tmp_path / "lake"


def context(flow: str, settings: dict, **meta: str) -> dg.OutputContext:
    return dg.build_output_context(
        asset_key=dg.AssetKey([flow, "records"]),
        run_id="run-1",
        definition_metadata={"flowbridge/settings": json.dumps(settings), **meta},
    )


def test_items_too_large_go_to_the_error_location(aws, moto_endpoint, oversized):
    staged, lake = oversized
    manager = DynamoDBIOManager(
        connection=AwsConnection(endpoint_url=moto_endpoint), error_root=str(lake)
    )
    manager.handle_output(
        context("f", {"connection": "aws_default", "table": "tbl"}, **{"flowbridge/key": "Id"}),
        staged,
    )
    assert sorted(i["Id"]["S"] for i in scan(aws("dynamodb"), "tbl")) == ["a", "c"]
    rejected = Lake(lake).scan("f__rejected").collect()
    assert rejected["Id"].to_list() == ["b"]
    assert "DynamoDB takes at most 409600" in rejected["_fb_reason"][0]


def test_events_too_large_go_to_the_error_location(aws, moto_endpoint, oversized):
    staged, lake = oversized
    manager = EventBridgeIOManager(
        connection=AwsConnection(endpoint_url=moto_endpoint), error_root=str(lake)
    )
    settings = {"connection": "aws_default", "source": "s", "detail_type": "d"}
    manager.handle_output(context("f", settings), staged)
    rejected = Lake(lake).scan("f__rejected").collect()
    assert rejected["Id"].to_list() == ["b"]
    assert "EventBridge takes at most 262144" in rejected["_fb_reason"][0]


@pytest.fixture
def faults(project, aws, moto_endpoint, monkeypatch):
    proxy = FaultProxy(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    yield proxy
    proxy.close()


def test_throttled_batches_are_retried(project, instance, sf, aws, faults):
    aws("events").create_event_bus(Name="flowbridge")
    (project.flows_dir / "to_events.yaml").write_text(SOURCE + TO_EVENTS)
    (project.flows_dir / "to_dynamodb.yaml").write_text(SOURCE + to_dynamodb("throttled"))
    faults.throttle(PUT_EVENTS, 3)
    faults.throttle(BATCH_WRITE, 3)
    for flow in ("to_events", "to_dynamodb"):
        result = run_flow(project, instance, flow)
        assert result.success, failure_message(result)
    assert faults.throttled == 6
    truth = live_opportunities(sf).filter(pl.col("StageName") == "Closed Won")
    assert len(scan(aws("dynamodb"), "throttled")) == truth.height


def test_permanent_throttling_fails_clearly_and_keeps_the_cursor(
    project, instance, sf, aws, faults
):
    aws("events").create_event_bus(Name="flowbridge")
    (project.flows_dir / "to_events.yaml").write_text(INCREMENTAL + TO_EVENTS)
    limit_attempts(project, 3)
    faults.throttle(PUT_EVENTS, -1)
    result = run_flow(project, instance, "to_events")
    assert not result.success
    assert "ThrottlingException" in failure_message(result)
    assert stored_cursor(instance, project, "to_events") is None


def test_partly_written_batches_are_completed_once(project, instance, sf, aws, faults):
    """Some calls take only part of their batch (UnprocessedItems, FailedEntryCount): the
    rest is sent again, and nothing twice."""
    queue = bus_to_queue(aws)
    (project.flows_dir / "to_events.yaml").write_text(INCREMENTAL + TO_EVENTS)
    (project.flows_dir / "to_dynamodb.yaml").write_text(INCREMENTAL + to_dynamodb("partly"))
    faults.hold_back(PUT_EVENTS, records=4, calls=3)
    faults.hold_back(BATCH_WRITE, records=7, calls=3)
    events = run_flow(project, instance, "to_events")
    assert events.success, failure_message(events)
    items = run_flow(project, instance, "to_dynamodb")
    assert items.success, failure_message(items)
    assert faults.held_back == 3 * 4 + 3 * 7

    ids = sorted(live_opportunities(sf).filter(pl.col("StageName") == "Closed Won")["Id"])
    assert sorted(e["detail"]["Id"] for e in drain(aws("sqs"), queue)) == ids
    assert sorted(i["Id"]["S"] for i in scan(aws("dynamodb"), "partly")) == ids
    for result, flow in ((events, "to_events"), (items, "to_dynamodb")):
        meta = materialization(result, flow, "records")
        assert meta["records_loaded"] == meta["rows_written"] == len(ids)
        assert meta["rows_refused_by_destination"] == 0
        assert stored_cursor(instance, project, flow) is not None


@pytest.mark.parametrize(
    ("target", "destination", "named"),
    [
        (PUT_EVENTS, TO_EVENTS, "EventBridge bus flowbridge"),
        (BATCH_WRITE, to_dynamodb("refusing"), "DynamoDB table refusing"),
    ],
)
def test_permanent_partial_failure_fails_clearly_and_keeps_the_cursor(
    project, instance, sf, aws, faults, target, destination, named
):
    aws("events").create_event_bus(Name="flowbridge")
    (project.flows_dir / "partly.yaml").write_text(INCREMENTAL + destination)
    faults.hold_back(target, records=3, calls=-1)
    result = run_flow(project, instance, "partly")
    assert not result.success
    assert f"{named}: 3 records still refused after 8 attempts" in failure_message(result)
    assert stored_cursor(instance, project, "partly") is None


def test_in_aws_refused_items_go_to_the_s3_error_root(aws, moto_endpoint, oversized):
    """FLOWBRIDGE_ENV=AWS: the error root is s3://...; refused items land there encrypted."""
    staged, _ = oversized
    s3, kms = aws("s3"), aws("kms")
    s3.create_bucket(Bucket="errors-bucket")
    key_arn = kms.create_key()["KeyMetadata"]["Arn"]
    manager = DynamoDBIOManager(
        connection=AwsConnection(endpoint_url=moto_endpoint),
        error_root="s3://errors-bucket/fb/_errors", error_kms_key_id=key_arn,
    )  # fmt: skip
    manager.handle_output(
        context("f", {"connection": "aws_default", "table": "tbl"}, **{"flowbridge/key": "Id"}),
        staged,
    )
    (key,) = published_files(s3, "errors-bucket", "fb/_errors/f__rejected/year=")
    rejected = pl.read_parquet(
        io.BytesIO(s3.get_object(Bucket="errors-bucket", Key=key)["Body"].read())
    )
    assert rejected["Id"].to_list() == ["b"]
    assert "DynamoDB takes at most 409600" in rejected["_fb_reason"][0]
    assert s3.head_object(Bucket="errors-bucket", Key=key)["SSEKMSKeyId"] == key_arn
