"""The HubSpot destination: CRM records created (batch/create) or upserted by a unique property
(batch/upsert), 100 a call. Each input carries an objectWriteTraceId (its place in the call), so
HubSpot answers which inputs it refused (207 Multi-Status, each error naming its trace id) rather
than refusing the call; results, which HubSpot does not promise in input order, are matched back
by trace id, else by the id property's value. A call refused whole (400 / 409: nothing applied)
is sent again in halves until the refused records stand alone. Each refused record goes to the
flow's error location with HubSpot's category and message, the record's own values masked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import polars as pl

from flow_assets.connectors.errors import ConnectorError, MalformedResponse
from flow_assets.connectors.http import Refused
from flow_assets.connectors.hubspot import HubSpotClient, HubSpotConnection
from flow_assets.destinations.saas_sink import RecordResult, SaasSinkIOManager, SinkWriter
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import HubSpotSinkSettings

BATCH = 100  # inputs per batch call
WHOLE_CALL_REFUSALS = (400, 409)  # HubSpot applied nothing: the halves may be sent
VALUE_LIST = "Property values were not valid: "


def reason(error: Any, values: Iterable[str]) -> str:
    """HubSpot's category and message for one refused record. HubSpot's messages quote values
    ("Email address x is invalid"): the record's own values are masked out of them."""
    error = error if isinstance(error, dict) else {}
    category = error.get("category") or error.get("status") or "error"
    message = str(error.get("message") or "no message given").strip()
    if message.startswith(VALUE_LIST):  # a JSON list of {name, error, message}, one a property
        try:
            listed = json.loads(message[len(VALUE_LIST) :])
            message = VALUE_LIST + "; ".join(
                f"{p['name']}: {p['error']} ({p['message']})" for p in listed
            )
        except (ValueError, TypeError, KeyError):
            pass
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        message = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", "***", message)
    return f"{category}: {message}"


def _text(name: str, dtype: pl.DataType, kind: str) -> pl.Expr:
    """A column as the text HubSpot takes for a property of type `kind`: dates YYYY-MM-DD (or
    midnight-UTC milliseconds for a datetime property), datetimes epoch milliseconds (without a
    zone: UTC), booleans true/false, numbers as written; null is "", which clears a value."""
    col = pl.col(name)
    if dtype == pl.Date():
        out = (col.cast(pl.Datetime("ms")).dt.epoch("ms").cast(pl.String) if kind == "datetime"
               else col.dt.to_string("%Y-%m-%d"))  # fmt: skip
    elif isinstance(dtype, pl.Datetime):
        out = col.dt.epoch("ms").cast(pl.String)
    else:
        out = col.cast(pl.String)
    return out.fill_null("").alias(name)


def _sendable(dtype: pl.DataType) -> bool:
    return (dtype.is_numeric() or isinstance(dtype, pl.Datetime | pl.Categorical | pl.Enum)
            or dtype in (pl.String(), pl.Boolean(), pl.Date(), pl.Null()))  # fmt: skip


class HubSpotWriter:
    """One flow's writes to one CRM object of an open HubSpot client."""

    batch_size = BATCH

    def __init__(self, client: HubSpotClient, settings: HubSpotSinkSettings, write: str,
                 key: list[str]):  # fmt: skip
        self.client, self.object, self.write_kind = client, settings.object, write
        self.id_property = (settings.id_property or key[0]) if write == "upsert" else None
        action = "upsert" if write == "upsert" else "create"
        self.path = f"/crm/v3/objects/{settings.object}/batch/{action}"
        self.target = f"hubspot://{settings.connection}/{settings.object} ({write})"
        self.kinds: dict[str, str] = {}

    def columns(self, schema: pl.Schema) -> list[str]:
        """The records' own fields (not Flowbridge's _fb_ ones), each a writable property of
        the object; an upsert's id property must require unique values."""
        names = [n for n in schema if not n.startswith("_fb_")]
        if self.id_property is not None and self.id_property not in names:
            raise ConnectorError(f"write upsert to {self.object} needs the property "
                                 f"{self.id_property} in every record; map it from the source")  # fmt: skip
        body = self.client._call("GET", f"/crm/v3/properties/{self.object}")
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise MalformedResponse(f"the properties of {self.object} are not a list answer")
        props = {p["name"]: p for p in results if isinstance(p, dict) and p.get("name")}
        for name in names:
            prop = props.get(name)
            if prop is None:
                raise ConnectorError(
                    f"{self.object} has no property '{name}'{did_you_mean(name, props)}: rename "
                    "or drop it with a map task"
                )
            if (prop.get("modificationMetadata") or {}).get("readOnlyValue") or prop.get(
                "calculated"
            ):
                raise ConnectorError(
                    f"{self.object}.{name} is read-only (HubSpot sets it): drop it with a map "
                    "task (map_all: {exclude: [...]})"
                )
            if not _sendable(schema[name]):
                raise ConnectorError(f"{name} is a {schema[name]}: a HubSpot property takes "
                                     "text, a number, a date or a boolean; cast it")  # fmt: skip
        if self.id_property is not None and not props[self.id_property].get("hasUniqueValue"):
            raise ConnectorError(
                f"{self.object}.{self.id_property} does not require unique values; upsert "
                "matches on a property that does (a contact's email, or a custom property "
                "created with unique values required)"
            )
        self.kinds = {n: str(props[n].get("type")) for n in names}
        return names

    def write(self, batch: pl.DataFrame) -> list[RecordResult]:
        """One call of at most 100 records (more if HubSpot refuses the call whole)."""
        text = batch.select(_text(n, batch.schema[n], self.kinds[n]) for n in batch.columns)
        return self._send(text)

    def _send(self, text: pl.DataFrame) -> list[RecordResult]:
        upsert = [pl.lit(self.id_property).alias("idProperty"),
                  pl.col(str(self.id_property)).alias("id")] if self.id_property else []  # fmt: skip
        inputs = text.select(
            pl.struct(text.columns).alias("properties"),
            pl.int_range(pl.len()).cast(pl.String).alias("objectWriteTraceId"),
            *upsert,
        )
        try:
            # A create repeated after a lost answer would create the records twice.
            answer = self.client._call(
                "POST", self.path, data=b'{"inputs":' + inputs.write_json().encode() + b"}",
                headers={"Content-Type": "application/json"},
                idempotent=self.write_kind != "insert",
            )  # fmt: skip
        except Refused as exc:
            if exc.answer.status_code not in WHOLE_CALL_REFUSALS:
                raise
            if text.height == 1:
                try:
                    body = json.loads(exc.answer.body)
                except ValueError:
                    body = {"message": exc.answer.text[:300]}
                return [RecordResult(False, error=reason(body, text.row(0)))]
            half = text.height // 2
            return self._send(text.head(half)) + self._send(text.slice(half))
        return self._results(text, answer)

    def _results(self, text: pl.DataFrame, answer: Any) -> list[RecordResult]:
        """One result per record sent, in order: refused ones from the errors' trace ids,
        written ones from the results (created: an upsert's `new`; every create)."""
        if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
            raise MalformedResponse(f"POST {self.path}: the answer has no 'results' list")
        n, place = text.height, {str(i): i for i in range(text.height)}
        refused: dict[int, str] = {}
        for error in answer.get("errors") or []:
            context = (error.get("context") if isinstance(error, dict) else None) or {}
            for trace in context.get("objectWriteTraceId") or []:
                if str(trace) in place:
                    refused[place[str(trace)]] = reason(error, text.row(place[str(trace)]))
        created: dict[int, bool] = {}
        if self.id_property is not None:
            keys = {str(v).lower(): i for i, v in enumerate(text[self.id_property])}
            for result in answer["results"]:
                result = result if isinstance(result, dict) else {}
                value = str((result.get("properties") or {}).get(self.id_property) or "").lower()
                i = place.get(str(result.get("objectWriteTraceId")))
                i = keys.get(value) if i is None and value else i
                if i is not None:
                    created[i] = bool(result.get("new"))
        elif len(answer["results"]) == n - len(refused):
            created = {i: True for i in range(n) if i not in refused}
        unaccounted = n - len(refused) - len(created.keys() - refused.keys())
        if unaccounted:
            raise ConnectorError(
                f"{self.target}: HubSpot's answer accounts for {n - unaccounted} of the {n} "
                f"records sent ({len(answer['results'])} results, {len(refused)} errors); the "
                "run stops rather than guess which were written"
            )
        return [RecordResult(False, error=refused[i]) if i in refused
                else RecordResult(True, created[i]) for i in range(n)]  # fmt: skip


class HubSpotIOManager(SaasSinkIOManager):
    """Writes a flow's records to HubSpot; refused records go to the error location."""

    connection: HubSpotConnection

    def writer(self, settings_json: str, write: str, key: list[str], rows: int) -> SinkWriter:
        settings = HubSpotSinkSettings.model_validate_json(settings_json)
        return HubSpotWriter(self.connection.open(), settings, write, key)
