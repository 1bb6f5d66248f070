"""The EventBridge destination: one event per record (its detail the record as JSON),
put_events in batches of at most 10 entries and 256 KB, failed entries sent again; an event
over 256 KB is refused with its reason into the error location rather than lost."""

import json
from typing import Any

import dagster as dg

from flow_assets.destinations.records import (
    RecordDestinationIOManager,
    json_value,
    report,
    retry_partial,
    staged_rows,
)
from flow_assets.destinations.staging import Staged
from flow_assets.spec.models import EventBridgeSettings

MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024


def entry(row: dict[str, Any], settings: EventBridgeSettings) -> dict[str, str]:
    detail = json.dumps({k: json_value(v) for k, v in row.items()}, separators=(",", ":"))
    return {
        "Source": settings.source,
        "DetailType": settings.detail_type,
        "Detail": detail,
        "EventBusName": settings.event_bus,
    }


def entry_size(e: dict[str, str]) -> int:
    """EventBridge's measure: Source, DetailType, Detail (and resources) as UTF-8."""
    return sum(len(e[k].encode()) for k in ("Source", "DetailType", "Detail"))


class EventBridgeIOManager(RecordDestinationIOManager):
    """Sends each record as an event."""

    def handle_output(self, context: dg.OutputContext, obj: Staged) -> None:
        meta = context.definition_metadata or {}
        settings = EventBridgeSettings.model_validate_json(str(meta["flowbridge/settings"]))
        client = self.connection.client("events")
        sent, refused, reasons = 0, [], []
        batch: list[dict[str, str]] = []
        size = 0

        def flush() -> None:
            nonlocal sent, batch, size
            if batch:
                what = f"EventBridge bus {settings.event_bus}"
                retry_partial(lambda b: _put(client, b), batch, self.attempts, what)
                sent += len(batch)
            batch, size = [], 0

        for row in staged_rows(obj):
            e = entry(row, settings)
            n = entry_size(e)
            if n > MAX_REQUEST_BYTES:
                refused.append(row)
                reasons.append(f"event is {n} bytes; EventBridge takes at most {MAX_REQUEST_BYTES}")
                continue
            if len(batch) == MAX_ENTRIES or size + n > MAX_REQUEST_BYTES:
                flush()
            batch.append(e)
            size += n
        flush()
        report(context, self, sent, refused, reasons, f"eventbridge://{settings.event_bus}")


def _put(client: Any, entries: list[dict[str, str]]) -> list[dict[str, str]]:
    """Send entries; return those EventBridge did not accept (FailedEntryCount > 0)."""
    answer = client.put_events(Entries=entries)
    if not answer.get("FailedEntryCount"):
        return []
    return [
        e for e, result in zip(entries, answer["Entries"], strict=True) if "ErrorCode" in result
    ]
