"""DynamoDB and EventBridge destinations on a real moto server, read back through boto3."""

import json
from decimal import Decimal

import dagster as dg
import polars as pl
import pytest

from flow_assets.connectors.aws import AwsConnection
from flow_assets.destinations.dynamodb import DynamoDBIOManager
from flow_assets.destinations.eventbridge import EventBridgeIOManager
from flow_assets.destinations.lake import Lake
from flow_assets.destinations.staging import ParquetBatchWriter
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
FULL = {"flowbridge/full_refresh": "true"}


def scan(ddb, table: str) -> list[dict]:
    items = []
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        items += page["Items"]
    return items


def test_flow_into_dynamodb_upserts_by_key(project, instance, sf, aws):
    (project.flows_dir / "to_dynamodb.yaml").write_text(
        SOURCE + "destination:\n  connector: dynamodb\n  write: upsert\n  key: [Id]\n"
        "  dynamodb: {connection: aws_default, table: opportunities}\n"
    )
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
    (project.flows_dir / "to_events.yaml").write_text(
        SOURCE + "destination:\n  connector: eventbridge\n  eventbridge: {connection: aws_default, "
        "event_bus: flowbridge, source: flowbridge.salesforce, detail_type: OpportunityWon}\n"
    )
    result = run_flow(project, instance, "to_events")
    assert result.success, failure_message(result)
    loaded = materialization(result, "to_events", "records")["records_loaded"]

    received = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            break
        received += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
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
def throttling(project, aws, moto_endpoint, monkeypatch):
    from tests.aws_faults import ThrottlingProxy

    proxy = ThrottlingProxy(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    yield proxy
    proxy.close()


def test_throttled_batches_are_retried(project, instance, sf, aws, throttling):
    aws("events").create_event_bus(Name="flowbridge")
    (project.flows_dir / "to_events.yaml").write_text(
        SOURCE + "destination:\n  connector: eventbridge\n  eventbridge: {connection: aws_default, "
        "event_bus: flowbridge, source: flowbridge.salesforce, detail_type: OpportunityWon}\n"
    )
    (project.flows_dir / "to_dynamodb.yaml").write_text(
        SOURCE + "destination:\n  connector: dynamodb\n  write: upsert\n  key: [Id]\n"
        "  dynamodb: {connection: aws_default, table: throttled}\n"
    )
    throttling.throttle("AWSEvents.PutEvents", 3)
    throttling.throttle("DynamoDB_20120810.BatchWriteItem", 3)
    for flow in ("to_events", "to_dynamodb"):
        result = run_flow(project, instance, flow)
        assert result.success, failure_message(result)
    assert throttling.throttled == 6
    truth = live_opportunities(sf).filter(pl.col("StageName") == "Closed Won")
    assert len(scan(aws("dynamodb"), "throttled")) == truth.height


def test_permanent_throttling_fails_clearly_and_keeps_the_cursor(
    project, instance, sf, aws, throttling
):
    aws("events").create_event_bus(Name="flowbridge")
    (project.flows_dir / "to_events.yaml").write_text(
        SOURCE.replace(
            "  fields: [Id,", "  incremental: {cursor_field: SystemModstamp}\n  fields: [Id,"
        ).replace("Email__c, SystemModstamp]", "Email__c, SystemModstamp]")
        + "destination:\n  connector: eventbridge\n  eventbridge: {connection: aws_default, "
        "event_bus: flowbridge, source: flowbridge.salesforce, detail_type: OpportunityWon}\n"
    )
    connections = project.flows_dir / "connections.yaml"
    connections.write_text(
        connections.read_text().replace(
            "  endpoint_url: ${AWS_ENDPOINT_URL:-}\n",
            "  endpoint_url: ${AWS_ENDPOINT_URL:-}\n  max_attempts: 3\n",
        )
    )
    throttling.throttle("AWSEvents.PutEvents", -1)
    result = run_flow(project, instance, "to_events")
    assert not result.success
    assert "ThrottlingException" in failure_message(result)
    assert stored_cursor(instance, project, "to_events") is None
