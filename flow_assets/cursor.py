"""The incremental cursor (high-water mark): stored with each successful `records`
materialization, so it advances only once the destination has committed the records."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from flow_assets.spec.models import FlowSpec

CURSOR = "cursor"  # the metadata entry of <flow>/records that holds it


def records_key(flow: FlowSpec) -> dg.AssetKey:
    return dg.AssetKey([flow.name, "records"])


def last_cursor(instance: dg.DagsterInstance, flow: FlowSpec) -> datetime | None:
    """The high-water mark stored with the last successful records materialization of a run
    without a partition: partition runs pull their own window and never move it."""
    page = None
    while True:
        found = instance.fetch_materializations(records_key(flow), limit=50, cursor=page)
        for record in found.records:
            if record.partition_key is None and record.asset_materialization is not None:
                value = record.asset_materialization.metadata.get(CURSOR)
                if value is None or not isinstance(value.value, str) or not value.value:
                    return None
                return datetime.fromisoformat(value.value)
        if not found.has_more:
            return None
        page = found.cursor


def new_cursor(instance: dg.DagsterInstance, flow: FlowSpec, extracted: pl.LazyFrame) -> str | None:
    """The newest cursor value this run read, never behind the stored one (ISO text)."""
    if not flow.source.incremental:
        return None
    field = flow.source.incremental.cursor_field
    newest = extracted.select(pl.col(field).max()).collect().item()
    previous = last_cursor(instance, flow)
    if newest is None:
        return previous.isoformat() if previous else None
    if not isinstance(newest, datetime):
        newest = datetime(newest.year, newest.month, newest.day, tzinfo=UTC)
    if previous and previous > newest:
        newest = previous
    return newest.isoformat()
