"""What is wrong with a page a connector's fast parser refused: named by page, record and field,
never by value (a value may be secret or masked). Every JSON source explains its pages here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import polars as pl

from flow_assets.connectors.base import FieldInfo

Fits = Callable[[Any, FieldInfo], bool]


def json_fits(value: Any, info: FieldInfo, temporal: type | tuple[type, ...] = str) -> bool:
    """Whether a JSON value has the type the field's dtype is read from; `temporal` says how the
    API writes times (ISO text mostly; Slack writes Unix seconds)."""
    dtype = info.dtype
    if isinstance(dtype, pl.List):
        return isinstance(value, list)
    if dtype == pl.Boolean():
        return isinstance(value, bool)
    if dtype.is_temporal():
        return isinstance(value, temporal) and not isinstance(value, bool)
    if dtype.is_integer():
        return isinstance(value, int) and not isinstance(value, bool)
    if dtype.is_float():
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def text_fits(value: Any, info: FieldInfo) -> bool:
    """For APIs that write every value as text (ServiceNow, HubSpot's properties)."""
    return isinstance(value, str)


def explain_page(
    body: bytes,
    where: str,
    list_key: str,
    infos: Iterable[FieldInfo],
    fits: Fits = json_fits,
    record_id: Callable[[Mapping[str, Any]], Any] = lambda r: r.get("id", "?"),
    values: Callable[[Mapping[str, Any]], Any] = lambda r: r,
    answer: str = "an answer",
    expected: Callable[[FieldInfo], str] = lambda info: info.source_type,
) -> str:
    """The first thing wrong with the page: not JSON, no `list_key` list of objects, or a field
    of `values(record)` whose JSON type does not fit its description."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        return f"{where} is not valid JSON ({exc.msg} at character {exc.pos} of {len(body)})"
    if not isinstance(doc, dict) or not isinstance(doc.get(list_key), list):
        return f"{where} is not {answer} (no '{list_key}' list)"
    infos = list(infos)
    for record in doc[list_key]:
        fields = values(record) if isinstance(record, dict) else None
        if not isinstance(fields, dict):
            return f"{where}: a record is not a JSON object with its fields"
        for info in infos:
            value = fields.get(info.name)
            if value is not None and not fits(value, info):
                return (
                    f"{where}: record {record_id(record)}: field {info.name} should be "
                    f"{expected(info)} but is a JSON {type(value).__name__}"
                )
    return f"{where} does not match the described fields"
