"""SOQL for a read request: fields, pushed-down filters and the cursor, literals escaped as
Salesforce documents them."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from flow_assets.connectors.base import FieldInfo, ObjectSchema, ReadRequest
from flow_assets.connectors.errors import ConnectorError
from flow_assets.spec.models import FilterSpec

SOQL_OPERATORS = {
    "equal_to": "=",
    "not_equal_to": "!=",
    "less_than": "<",
    "less_than_or_equal_to": "<=",
    "greater_than": ">",
    "greater_than_or_equal_to": ">=",
}
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def build_soql(request: ReadRequest, schema: ObjectSchema) -> str:
    """SELECT the fields, WHERE the pushed-down filters and the cursor's bounds, ORDER BY the
    cursor."""
    for name in [request.object, *request.fields]:
        if not _IDENT.match(name):
            raise ConnectorError(f"'{name}' is not a valid Salesforce name")
    conditions = [soql_condition(f, schema.fields[f.field]) for f in request.filters]
    if request.cursor_field:
        info = schema.fields[request.cursor_field]
        bounds = (
            (">", request.cursor_after), (">=", request.cursor_from), ("<", request.cursor_before)
        )  # fmt: skip
        conditions += [f"{info.name} {op} {soql_literal(v, info)}" for op, v in bounds if v]
    soql = f"SELECT {', '.join(request.fields)} FROM {request.object}"
    if conditions:
        soql += " WHERE " + " AND ".join(conditions)
    if request.cursor_field:
        soql += f" ORDER BY {request.cursor_field} ASC"
    return soql


def change_probe_soql(request: ReadRequest, schema: ObjectSchema) -> str:
    """The read's newest record by its cursor field, as at most one row: the same WHERE as
    build_soql (filters and cursor), ordered the other way, LIMIT 1."""
    field = request.cursor_field
    if field is None:
        raise ConnectorError("a change probe needs the cursor field that records changes")
    read = build_soql(replace(request, fields=list(dict.fromkeys(["Id", field]))), schema)
    order = f" ORDER BY {field} ASC"
    if not read.endswith(order):
        raise ConnectorError("build_soql no longer ends with ORDER BY the cursor field")
    return read.removesuffix(order) + f" ORDER BY {field} DESC NULLS LAST LIMIT 1"


def can_push_down(spec: FilterSpec, info: FieldInfo) -> bool:
    """Whether SOQL evaluates this filter exactly as the local Polars filter does."""
    if not info.filterable or info.source_type in ("textarea", "base64", "encryptedstring"):
        return False
    # SOQL's LIKE is case-insensitive; the local 'contains' is not, so it stays local.
    return spec.operator != "contains"


def soql_condition(spec: FilterSpec, info: FieldInfo) -> str:
    name, op, value = info.name, spec.operator, spec.value
    if op in SOQL_OPERATORS:
        return f"{name} {SOQL_OPERATORS[op]} {soql_literal(value, info)}"
    if op == "between":
        low, high = value  # type: ignore[misc]
        return f"({name} >= {soql_literal(low, info)} AND {name} <= {soql_literal(high, info)})"
    if op in ("in", "not_in"):
        items = ", ".join(soql_literal(v, info) for v in value)  # type: ignore[union-attr]
        return f"{name} {'IN' if op == 'in' else 'NOT IN'} ({items})"
    if op == "is_null":
        return f"{name} = null"
    if op == "is_not_null":
        return f"{name} != null"
    raise ConnectorError(f"filter operator '{op}' cannot be written in SOQL")


def soql_literal(value: Any, info: FieldInfo) -> str:
    """A SOQL literal for a value compared with this field, escaped as Salesforce documents."""
    kind = info.source_type
    if value is None:
        return "null"
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ConnectorError(f"{info.name} is a boolean field; compare it with true or false")
        return "true" if value else "false"
    if kind in ("int", "long", "double", "currency", "percent"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConnectorError(f"{info.name} is a {kind} field; compare it with a number")
        return repr(value) if isinstance(value, float) else str(value)
    if kind == "date":
        return _as_date(value, info).isoformat()
    if kind == "datetime":
        return _as_datetime(value, info).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return "'" + _escape(str(value)) + "'"


def _escape(text: str) -> str:
    out = text.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"')
    return out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _as_date(value: Any, info: FieldInfo) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConnectorError(f"{info.name} is a date field; compare it with YYYY-MM-DD") from None


def _as_datetime(value: Any, info: FieldInfo) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ConnectorError(
                f"{info.name} is a datetime field; compare it with an ISO 8601 timestamp"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
