"""The DynamoDB destination: batch_write_item in batches of 25, unprocessed items retried with
backoff, floats as Decimal, the key schema from the flow; items over 400 KB are refused with
their reason into the error location rather than lost."""

import functools
import json
from decimal import Decimal
from typing import Any

import dagster as dg
import polars as pl

from flow_assets.destinations.records import (
    RecordDestinationIOManager,
    chunks,
    json_value,
    report,
    retry_partial,
    staged_rows,
)
from flow_assets.destinations.staging import Staged
from flow_assets.spec.models import DynamoDBSettings

BATCH = 25  # batch_write_item's limit
MAX_ITEM_BYTES = 400 * 1024


@functools.cache
def _serializer() -> Any:
    from boto3.dynamodb.types import TypeSerializer  # boto3 is loaded only when it is used

    return TypeSerializer()


def item(row: dict[str, Any]) -> dict[str, Any]:
    """A record as a DynamoDB item: numbers as Decimal, dates as ISO text, nulls left out."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if value is None:
            continue
        out[name] = _serializer().serialize(
            Decimal(repr(value)) if isinstance(value, float) else json_value(value)
        )
    return out


def item_size(it: dict[str, Any]) -> int:
    """DynamoDB's measure, near enough: attribute names plus values as UTF-8."""
    return sum(
        len(k.encode()) + sum(len(str(x).encode()) for x in v.values()) for k, v in it.items()
    )


class DynamoDBIOManager(RecordDestinationIOManager):
    """Puts each record as an item; a later record with the same key replaces the earlier."""

    def handle_output(self, context: dg.OutputContext, obj: Staged) -> None:
        meta = context.definition_metadata or {}
        settings = DynamoDBSettings.model_validate_json(str(meta["flowbridge/settings"]))
        key = [k for k in str(meta.get("flowbridge/key", "")).split(",") if k]
        client = self.connection.client("dynamodb")
        schema = pl.scan_parquet(obj.files[0]).collect_schema()
        if settings.create_table:
            ensure_table(client, settings.table, key, schema)
        written, refused, reasons = 0, [], []
        for batch in chunks(staged_rows(obj), BATCH):
            requests = []
            for row in batch:
                it = item(row)
                if (size := item_size(it)) > MAX_ITEM_BYTES:
                    refused.append(row)
                    reasons.append(f"item is {size} bytes; DynamoDB takes at most {MAX_ITEM_BYTES}")
                else:
                    requests.append({"PutRequest": {"Item": it}})
            if requests:
                retry_partial(
                    lambda reqs: client.batch_write_item(
                        RequestItems={settings.table: reqs}
                    ).get("UnprocessedItems", {}).get(settings.table, []),
                    _dedupe(requests, key), self.attempts, f"DynamoDB table {settings.table}",
                )  # fmt: skip
                written += len(requests)
        report(context, self, written, refused, reasons, f"dynamodb://{settings.table}")


def _dedupe(requests: list[dict], key: list[str]) -> list[dict]:
    """batch_write_item refuses two items with one key in a batch: the later one wins."""
    by_key = {
        json.dumps([r["PutRequest"]["Item"].get(k) for k in key], default=str): r for r in requests
    }
    return list(by_key.values())


def ensure_table(client: Any, name: str, key: list[str], schema: pl.Schema) -> None:
    try:
        client.describe_table(TableName=name)
        return
    except client.exceptions.ResourceNotFoundException:
        pass
    roles = ["HASH", "RANGE"]
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": k, "KeyType": roles[i]} for i, k in enumerate(key)],
        AttributeDefinitions=[
            {"AttributeName": k, "AttributeType": "N" if schema[k].is_numeric() else "S"}
            for k in key
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
