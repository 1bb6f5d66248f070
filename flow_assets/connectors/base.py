"""The contract every source connector meets: describe objects with typed fields, read typed pages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol, runtime_checkable

import polars as pl

from flow_assets.connectors.errors import ConnectorError, UnknownField
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import FilterSpec


@dataclass(frozen=True)
class FieldInfo:
    name: str
    source_type: str
    dtype: pl.DataType
    nillable: bool = True
    filterable: bool = True


@dataclass(frozen=True)
class ObjectSchema:
    name: str
    fields: dict[str, FieldInfo]
    # Where a read with include_deleted returns deleted records too: the field and the value
    # that mark one (Salesforce's IsDeleted true, HubSpot's archived true, a Zendesk ticket's
    # status "deleted"); None: the source keeps no deleted records to read.
    deleted_when: tuple[str, Any] | None = None

    def require(self, names: Sequence[str], where: str = "source.fields") -> list[FieldInfo]:
        """The named fields, or UnknownField naming the first one the object lacks."""
        missing = [n for n in names if n not in self.fields]
        if missing:
            name = missing[0]
            raise UnknownField(
                f"{where}: '{name}' is not a field of {self.name}{did_you_mean(name, self.fields)}"
            )
        return [self.fields[n] for n in names]

    def polars_schema(self, names: Sequence[str]) -> pl.Schema:
        return pl.Schema({n: self.fields[n].dtype for n in names})


@dataclass(frozen=True)
class ReadRequest:
    object: str
    fields: list[str]
    filters: list[FilterSpec] = field(default_factory=list)
    cursor_field: str | None = None
    cursor_after: datetime | None = None  # cursor > this (the high-water mark)
    cursor_from: datetime | None = None  # cursor >= this (the flow's or a partition's start)
    cursor_before: datetime | None = None  # cursor < this (a partition's end)
    start_after: str | None = None  # S3: only objects whose key sorts after this one
    page_size: int | None = None
    include_deleted: bool = False  # deleted (recycle bin) records too, where the source keeps them

    def cursor_window(self) -> pl.Expr | None:
        """The cursor bounds as a Polars filter, for sources whose own bounds are coarser
        (whole seconds) or absent; None without a cursor field or bounds."""
        if self.cursor_field is None:
            return None
        col = pl.col(self.cursor_field)
        bounds = [(col > self.cursor_after) if self.cursor_after is not None else None,
                  (col >= self.cursor_from) if self.cursor_from is not None else None,
                  (col < self.cursor_before) if self.cursor_before is not None else None]  # fmt: skip
        conditions = [b for b in bounds if b is not None]
        return pl.all_horizontal(conditions) if conditions else None


class SourceClient(Protocol):
    """An open session to one source; built by the connection resource's `open()`.

    Optional: `latest_change` (see ChangeProbe), which flows with an event trigger need.
    """

    def check(self) -> None: ...

    def list_objects(self) -> list[str]: ...

    def describe(self, object_name: str) -> ObjectSchema: ...

    def can_push_down(self, spec: FilterSpec, info: FieldInfo) -> bool:
        """Whether the source evaluates this filter exactly as the local filter does."""
        ...

    def read(self, request: ReadRequest) -> Iterator[pl.DataFrame]: ...


def latest_change(client: SourceClient, request: ReadRequest) -> datetime | None:
    """The newest cursor value among the records `request` would read: the source's own cheap
    probe where it has one (ChangeProbe), else a read of the cursor field alone past
    `cursor_after`, which costs what the changes since then cost to read. With no
    `cursor_after` (nothing seen yet) the first page that has records answers."""
    if isinstance(client, ChangeProbe):
        return client.latest_change(request)
    if request.cursor_field is None:
        raise ConnectorError(
            f"{type(client).__name__} has no change probe: give the flow "
            "source.incremental.cursor_field, which its probe reads"
        )
    newest = None
    for page in client.read(replace(request, fields=[request.cursor_field])):
        if page.height:
            top = page[request.cursor_field].max()
            newest = top if newest is None or (top is not None and top > newest) else newest
            if request.cursor_after is None:
                break
    if isinstance(newest, date) and not isinstance(newest, datetime):  # a date cursor
        newest = datetime(newest.year, newest.month, newest.day, tzinfo=UTC)
    return newest


@runtime_checkable
class ChangeProbe(Protocol):
    """The optional part of a SourceClient: a cheap question whether anything changed."""

    def latest_change(self, request: ReadRequest) -> datetime | None:
        """The newest cursor value among the records `request` would read (those past its
        `cursor_after` and through its filters), or None when there are none."""
        ...
