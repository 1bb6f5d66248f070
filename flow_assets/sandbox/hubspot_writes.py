"""The sandbox's CRM batch writes: POST /crm/v3/objects/{object}/batch/create and .../batch/upsert
(matched on a unique property), at most 100 inputs a call, each value checked as HubSpot checks
it. With an objectWriteTraceId on every input, refused inputs are reported one by one (207
Multi-Status: results, and errors naming their inputs' trace ids) and the rest applied; without,
the first refused input fails the whole call (400, or 409 for a unique value already taken) and
nothing is applied. Results are not in input order (HubSpot does not promise it): an upsert
answers its updates before its creates."""

from __future__ import annotations

import json
import math
import re
import threading
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from flow_assets.sandbox.server import Reply, json_body

if TYPE_CHECKING:
    from flow_assets.sandbox.hubspot import HubSpotSandbox

MAX_INPUTS = 100  # per batch call
# Unique properties (what an upsert matches on): a contact's email, and deals' external_id, a
# custom property such as a HubSpot admin creates with "require unique values".
UNIQUE = frozenset({"hs_object_id", "email", "external_id"})
CUSTOM = frozenset({"external_id"})
CALCULATED = frozenset({"hs_is_closed_won"})
_WRITE_LOCK = threading.Lock()  # a write reads, changes and replaces the whole frame
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_NOUNS = {"contacts": "Contact", "companies": "Company", "deals": "Deal"}


def read_only(name: str) -> bool:
    """HubSpot's own properties (hs_...) and lastmodifieddate: modificationMetadata
    .readOnlyValue."""
    return name.startswith("hs_") or name == "lastmodifieddate"


class Refusal(Exception):
    """One input refused: HubSpot's category, message and context (status for a whole call)."""

    def __init__(self, category: str, message: str, status: int = 400, **context: list[str]):
        super().__init__(message)
        self.category, self.message, self.status, self.context = category, message, status, context

    def as_error(self, trace: str) -> dict[str, Any]:
        """The input's entry in a 207's errors (the fields the vendor's client requires)."""
        return {"status": "error", "category": self.category, "message": self.message,
                "context": {"objectWriteTraceId": [trace], **self.context}, "links": {},
                "errors": []}  # fmt: skip


def respond(sandbox: HubSpotSandbox, object_name: str, action: str, body: bytes) -> Reply:
    """POST .../batch/{create|upsert}: the call's answer; the data changes only as answered."""
    from flow_assets.sandbox.hubspot import PROPERTIES

    if object_name not in PROPERTIES:
        return sandbox._error(400, f"Unable to infer object type from: {object_name}",
                              "VALIDATION_ERROR")  # fmt: skip
    try:
        doc = json.loads(body or b"null")
    except ValueError:
        return sandbox._error(400, "Invalid input JSON on line 1", "VALIDATION_ERROR")
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        return sandbox._error(400, "Invalid input JSON: inputs must be a list of objects",
                              "VALIDATION_ERROR")  # fmt: skip
    if len(inputs) > MAX_INPUTS:
        return sandbox._error(400, f"Batch input size {len(inputs)} is larger than the limit of "
                              f"{MAX_INPUTS}", "VALIDATION_ERROR")  # fmt: skip
    if action == "upsert":
        refused = _upsert_keys(object_name, inputs)
        if refused is not None:
            return sandbox._error(400, refused, "VALIDATION_ERROR")
    traces = [i.get("objectWriteTraceId") for i in inputs]
    multi_status = all(isinstance(t, str) and t for t in traces)
    started = _stamp(datetime.now(UTC))
    with _WRITE_LOCK:
        batch = _Batch(sandbox, object_name)
        done: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (input, its result)
        errors = []
        for trace, one in zip(traces, inputs, strict=True):
            try:
                done.append((one, batch.upsert(one) if action == "upsert" else batch.create(one)))
            except Refusal as exc:
                if not multi_status:  # the whole call fails; nothing is applied
                    return sandbox._error(exc.status, exc.message, exc.category,
                                          **({"context": exc.context} if exc.context else {}))  # fmt: skip
                errors.append(exc.as_error(str(trace)))
        batch.commit()
    if action == "upsert":  # updates first, then creates: not the inputs' order
        done.sort(key=lambda pair: pair[1]["new"])
    answer: dict[str, Any] = {"status": "COMPLETE", "results": batch.answers(done),
                              "startedAt": started, "completedAt": _stamp(datetime.now(UTC))}  # fmt: skip
    if errors:
        answer |= {"numErrors": len(errors), "errors": errors}
    return Reply(207 if errors else 201 if action == "create" else 200, json_body(answer))


def _upsert_keys(object_name: str, inputs: list[dict[str, Any]]) -> str | None:
    """Why the whole upsert call is refused, if it is: a property that is not unique to match
    on, or one id twice."""
    from flow_assets.sandbox.hubspot import PROPERTIES

    seen: set[str] = set()
    for one in inputs:
        prop = one.get("idProperty")
        if prop not in PROPERTIES[object_name] or prop not in UNIQUE or prop == "hs_object_id":
            return f"Unable to perform update/upsert by non-unique {prop} property"
        key = str(one.get("id") or "")
        if key and key in seen:
            return f"Duplicate IDs found in batch input: [{key}]"
        seen.add(key)
    return None


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Batch:
    """One call's inputs applied to a copy of the object's rows, committed at the end."""

    def __init__(self, sandbox: HubSpotSandbox, object_name: str):
        from flow_assets.sandbox.hubspot import PROPERTIES

        self.sandbox, self.object = sandbox, object_name
        self.kinds = PROPERTIES[object_name]
        self.frame = sandbox.frame(object_name)
        self.rows: dict[int, dict[str, Any]] = {}  # row number -> the row as this call leaves it
        self.height = self.frame.height
        ids = self.frame["id"].cast(pl.Int64)
        self.next_id = int(ids.max()) + 1 if self.height else 1
        live = self.frame.with_row_index("_n").filter(~pl.col("archived"))
        self.index = {p: {v: n for v, n in zip(live[p], live["_n"], strict=True) if v is not None}
                      for p in UNIQUE & set(self.kinds)}  # fmt: skip
        now = datetime.now(UTC)  # HubSpot keeps milliseconds
        self.now = now.replace(microsecond=now.microsecond // 1000 * 1000)

    def row(self, n: int) -> dict[str, Any]:
        return self.rows[n] if n in self.rows else self.frame.row(n, named=True)

    def create(self, one: dict[str, Any], values: dict[str, Any] | None = None) -> dict[str, Any]:
        values = self.typed(one.get("properties")) if values is None else values
        self.unique(values, None)
        record_id = str(self.next_id)
        self.next_id += 1
        row = dict.fromkeys(self.frame.columns) | values | {
            "id": record_id, "archived": False, "hs_object_id": float(record_id),
            "createdate": values.get("createdate") or self.now, "hs_lastmodifieddate": self.now,
        }  # fmt: skip
        if "lastmodifieddate" in self.kinds:
            row["lastmodifieddate"] = self.now
        self.put(self.height, row)
        self.height += 1
        return {"row": row, "sent": list(values), "new": True}

    def upsert(self, one: dict[str, Any]) -> dict[str, Any]:
        prop, key = one["idProperty"], one.get("id")
        if key in (None, ""):
            raise Refusal("VALIDATION_ERROR", f"an id (a value of {prop}) is required to upsert")
        properties = one.get("properties")
        values = self.typed({**properties, prop: key} if isinstance(properties, dict) else None)
        n = self.index[prop].get(values[prop])
        if n is None:
            return self.create(one, values)
        row = self.row(n)
        changed = {k: v for k, v in values.items() if row[k] != v}
        self.unique(changed, n)
        if changed:  # an upsert that changes nothing leaves the record (and its stamps) as it was
            row = row | changed | {"hs_lastmodifieddate": self.now}
            row |= {"lastmodifieddate": self.now} if "lastmodifieddate" in self.kinds else {}
            self.put(n, row)
        return {"row": row, "sent": list(values), "new": False}

    # --- checks ----------------------------------------------------------------------

    def typed(self, properties: Any) -> dict[str, Any]:
        """The input's values as their properties' types; every bad one is named at once."""
        if not isinstance(properties, dict):
            raise Refusal("VALIDATION_ERROR", "Invalid input JSON: properties must be an object")
        values, problems = {}, []
        for name, value in properties.items():
            if name not in self.kinds:
                problems.append(
                    (name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
                )
            elif read_only(name) or name in CALCULATED:
                problems.append((name, "READ_ONLY_VALUE",
                                 f'"{name}" is a read only property; its value cannot be set.'))  # fmt: skip
            else:
                try:
                    values[name] = self.value(name, value)
                except Refusal as exc:
                    problems.append((name, exc.category, exc.message))
        if problems:
            listed = [{"isValid": False, "message": m, "error": code, "name": name,
                       "localizedErrorMessage": m} for name, code, m in problems]  # fmt: skip
            raise Refusal("VALIDATION_ERROR", "Property values were not valid: "
                          + json.dumps(listed, separators=(",", ":")))  # fmt: skip
        return values

    def value(self, name: str, raw: Any) -> Any:
        """One value as its property's type ("" clears it); Refusal(code, message) if it is not
        one HubSpot takes."""
        from flow_assets.sandbox.hubspot import _OPTIONS

        kind = self.kinds[name]
        text = {True: "true", False: "false"}.get(raw, raw) if isinstance(raw, bool) else raw
        text = "" if text is None else str(text)
        if text == "":
            return None
        if kind == "number":
            if not _NUMBER.match(text) or not math.isfinite(float(text)):
                raise Refusal("INVALID_INTEGER", f"{name} was not a valid number")
            return float(text)
        if kind == "bool":
            if text not in ("true", "false"):
                raise Refusal("INVALID_BOOLEAN", f"{text} was not a valid boolean")
            return text == "true"
        if kind == "enumeration" and text not in _OPTIONS[name]:
            raise Refusal("INVALID_OPTION", f"{text} was not one of the allowed options: "
                          f"[{', '.join(_OPTIONS[name])}]")  # fmt: skip
        if name == "email" and not _EMAIL.match(text):
            raise Refusal("INVALID_EMAIL", f"Email address {text} is invalid")
        if kind == "date":
            return _date(text)
        if kind == "datetime":
            return _datetime(text)
        return text

    def unique(self, values: dict[str, Any], own: int | None) -> None:
        for prop, value in values.items():
            other = self.index.get(prop, {}).get(value)
            if value is not None and other is not None and other != own:
                existing = self.row(other)["id"]
                raise Refusal("CONFLICT", f"{_NOUNS[self.object]} already exists. Existing ID: "
                              f"{existing}", 409, existingId=[existing])  # fmt: skip

    # --- the data --------------------------------------------------------------------

    def put(self, n: int, row: dict[str, Any]) -> None:
        old = self.row(n) if n < self.height else {}
        for prop, index in self.index.items():
            if old.get(prop) is not None:
                index.pop(old[prop], None)
            if row[prop] is not None:
                index[row[prop]] = n
        self.rows[n] = row

    def answers(self, done: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, Any]]:
        """Each result as HubSpot writes it: the properties sent and the defaults, as text."""
        from flow_assets.sandbox.hubspot import DEFAULT_PROPERTIES, _wire

        if not done:
            return []
        rows = pl.DataFrame([r["row"] for _, r in done], schema=self.frame.schema)
        wired = _wire(rows, self.object).to_dicts()
        out = []
        for (one, result), wire in zip(done, wired, strict=True):
            names = dict.fromkeys([*result["sent"], *DEFAULT_PROPERTIES[self.object]])
            answer = {"id": wire["id"], "properties": {n: wire[n] for n in names},
                      "createdAt": wire["createdAt"], "updatedAt": wire["updatedAt"],
                      "archived": False}  # fmt: skip
            if "idProperty" in one:
                answer["new"] = result["new"]
            if one.get("objectWriteTraceId") and "idProperty" in one:
                answer["objectWriteTraceId"] = one["objectWriteTraceId"]
            out.append(answer)
        return out

    def commit(self) -> None:
        from flow_assets.sandbox.hubspot import _wire

        if not self.rows:
            return
        frame, schema = self.frame, self.frame.schema
        changed = {n: r for n, r in self.rows.items() if n < frame.height}
        if changed:
            at = pl.Series("_n", list(changed), dtype=pl.UInt32)
            rows = pl.DataFrame(list(changed.values()), schema=schema).with_columns(at)
            frame = (
                pl.concat([frame.with_row_index("_n").filter(~pl.col("_n").is_in(at.implode())),
                           rows.select("_n", *schema)])
                .sort("_n").drop("_n")
            )  # fmt: skip
        added = [self.rows[n] for n in range(self.frame.height, self.height)]
        if added:
            frame = pl.concat([frame, pl.DataFrame(added, schema=schema)])
        with self.sandbox._lock:
            self.sandbox._frames[self.object] = (frame, _wire(frame, self.object))


def _date(text: str) -> date:
    """A date: YYYY-MM-DD, or epoch milliseconds at midnight UTC (HubSpot refuses any other
    time of day)."""
    if re.fullmatch(r"-?\d+", text):
        moment = datetime.fromtimestamp(int(text) / 1000, UTC)
        if moment.time() != datetime.min.time():
            clock = f"{moment.hour}:{moment.minute}:{moment.second}.{moment.microsecond // 1000}"
            raise Refusal("INVALID_DATE", f"{text} is at {clock} UTC, not midnight!")
        return moment.date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Refusal("INVALID_DATE", f"{text} was not a valid date") from None


def _datetime(text: str) -> datetime:
    """A moment: epoch milliseconds or ISO 8601 (UTC without an offset), kept to the ms."""
    try:
        if re.fullmatch(r"-?\d+", text):
            moment = datetime.fromtimestamp(int(text) / 1000, UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise Refusal("INVALID_DATETIME", f"{text} was not a valid datetime") from None
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
