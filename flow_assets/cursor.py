"""The incremental cursor (high-water mark): stored with each successful `records`
materialization, so it advances only once the destination has committed the records."""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from flow_assets.spec.models import FlowSpec
from flow_assets.spec.s3_source import by_object_key

CURSOR = "cursor"  # the metadata entry of <flow>/records that holds it


def records_key(flow: FlowSpec) -> dg.AssetKey:
    return dg.AssetKey([flow.name, "records"])


def stored_cursor(instance: dg.DagsterInstance, flow: FlowSpec) -> str | None:
    """The cursor stored with the last successful records materialization of a run without a
    partition (partition runs pull their own window and never move it), as stored."""
    page = None
    while True:
        found = instance.fetch_materializations(records_key(flow), limit=50, cursor=page)
        for record in found.records:
            if record.partition_key is None and record.asset_materialization is not None:
                value = record.asset_materialization.metadata.get(CURSOR)
                if value is None or not isinstance(value.value, str) or not value.value:
                    return None
                return value.value
        if not found.has_more:
            return None
        page = found.cursor


def last_cursor(instance: dg.DagsterInstance, flow: FlowSpec) -> datetime | None:
    """The high-water mark: the newest cursor field value the flow has committed."""
    value = stored_cursor(instance, flow)
    return datetime.fromisoformat(value) if value else None


def last_key(instance: dg.DagsterInstance, flow: FlowSpec) -> str | None:
    """An S3 source's object-key cursor: the last object key the flow has committed."""
    return stored_cursor(instance, flow) if by_object_key(flow) else None


def new_cursor(instance: dg.DagsterInstance, flow: FlowSpec, extracted: pl.LazyFrame) -> str | None:
    """The newest cursor value this run read, never behind the stored one (ISO text, or the
    object key itself for an S3 source's object-key cursor)."""
    if not flow.source.incremental:
        return None
    field = flow.source.incremental.cursor_field
    newest = extracted.select(pl.col(field).max()).collect().item()
    if by_object_key(flow):  # keys compare as S3 lists them: by code point (UTF-8 order)
        keys = [k for k in (newest, last_key(instance, flow)) if k]
        return max(keys) if keys else None
    previous = last_cursor(instance, flow)
    if newest is None:
        return previous.isoformat() if previous else None
    if not isinstance(newest, datetime):
        newest = datetime(newest.year, newest.month, newest.day, tzinfo=UTC)
    if previous and previous > newest:
        newest = previous
    return newest.isoformat()
