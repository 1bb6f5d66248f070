"""What one run pulls: the window on the cursor field (its partition's; else past the
high-water mark less the lookback, the flow's start, or AppFlow's last 30 days; for an S3
source's object-key cursor, the objects after the last key read), and the soft-delete flag of
records read with include_deleted."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from flow_assets.connectors.base import ObjectSchema
from flow_assets.connectors.errors import UnknownField
from flow_assets.cursor import last_cursor, last_key
from flow_assets.spec.models import FlowSpec
from flow_assets.spec.s3_source import by_object_key

FIRST_RUN_DAYS = 30  # AppFlow's first incremental run pulls the past 30 days
DELETED = "_fb_deleted"  # the soft-delete flag: true for a record deleted at the source


@dataclass(frozen=True)
class Window:
    """Bounds on the cursor field: after (exclusive: the high-water mark), from `start`
    (inclusive: the flow's start), or [start, end) for a partition."""

    after: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    after_key: str | None = None  # an S3 source's object-key cursor: objects after this key

    def describe(self) -> str:
        if self.after_key is not None:
            return f"objects after {self.after_key}"
        if self.start is not None and self.end is not None:
            return f"[{self.start.isoformat()}, {self.end.isoformat()})"
        if self.start is not None:
            return f"from {self.start.isoformat()}"
        return f"after {self.after.isoformat()}" if self.after else "(full read)"


def now() -> datetime:
    return datetime.now(UTC)


def read_window(
    flow: FlowSpec, context: dg.AssetExecutionContext, partitioned: bool, full_refresh: bool
) -> Window:
    """A partition pulls exactly its window and never looks at the cursor. Otherwise: past
    the stored high-water mark less the lookback; on a first run (or a full refresh) from
    the flow's start on, or everything for `start: all`; a first run without a start pulls
    the last 30 days, as AppFlow does (a full refresh then reads everything)."""
    if partitioned:
        window = context.partition_time_window
        return Window(start=window.start, end=window.end)
    incremental = flow.source.incremental
    if incremental is None:
        return Window()
    if by_object_key(flow):  # the first run (or a full refresh) reads every object
        return Window(after_key=None if full_refresh else last_key(context.instance, flow))
    stored = None if full_refresh else last_cursor(context.instance, flow)
    if stored is not None:
        return Window(after=stored - (incremental.lookback or timedelta(0)))
    if isinstance(incremental.start, datetime):  # from the start on, the start included
        return Window(start=incremental.start)
    if incremental.start == "all" or full_refresh:
        return Window()
    return Window(after=now() - timedelta(days=FIRST_RUN_DAYS))


def deleted_when(flow: FlowSpec, source: ObjectSchema) -> tuple[str, Any] | None:
    """The field and value marking deleted records when the flow reads them (include_deleted),
    or None; a source that keeps no deleted records for the object is refused, naming the
    setting."""
    if not flow.source.include_deleted:
        return None
    if source.deleted_when is None:
        raise UnknownField(
            f"source.include_deleted: {source.name} keeps no deleted records to read; remove "
            "include_deleted"
        )
    return source.deleted_when


def read_fields(flow: FlowSpec, fields: list[str], source: ObjectSchema) -> list[str]:
    """The fields to request: with include_deleted, the field marking deleted records too."""
    marker = deleted_when(flow, source)
    return [*fields, marker[0]] if marker is not None and marker[0] not in fields else fields


def flag_deleted(
    pages: Iterator[pl.DataFrame], schema: pl.Schema, flow: FlowSpec, fields: list[str],
    source: ObjectSchema,
) -> tuple[Iterator[pl.DataFrame], pl.Schema]:  # fmt: skip
    """With include_deleted, whether each record is deleted (Salesforce's IsDeleted, HubSpot's
    archived, a Zendesk ticket's status) as _fb_deleted; the marking field itself stays only
    when the flow lists it: the destination keeps deleted records, flagged."""
    marker = deleted_when(flow, source)
    if marker is None:
        return pages, schema
    name, value = marker
    keep = name in fields
    flagged = {**{k: v for k, v in schema.items() if keep or k != name}, DELETED: pl.Boolean}

    def flag(page: pl.DataFrame) -> pl.DataFrame:
        page = page.with_columns((pl.col(name) == value).fill_null(False).alias(DELETED))
        return page if keep else page.drop(name)

    return (flag(page) for page in pages), pl.Schema(flagged)
