"""The sandbox's sObject Collections writes: insert (POST), update by Id (PATCH), upsert by an
external id field (PATCH .../{SObject}/{Field}) and delete (DELETE ?ids=), up to 200 records
a call, each answered in request order with success or its errors, as Salesforce documents."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import polars as pl

from flow_assets.sandbox import salesforce_data as data
from flow_assets.sandbox.server import Reply, json_body

if TYPE_CHECKING:
    from flow_assets.sandbox.salesforce import SalesforceSandbox

KINDS = ("collections", "collections_upsert")
MAX_RECORDS = 200  # per sObject Collections call
_WRITE_LOCK = threading.Lock()  # a write reads, changes and replaces the whole frame
_NUMERIC = ("currency", "double", "percent")
_ROLLED_BACK = (
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone "
    "header",
)


class RecordError(Exception):
    def __init__(self, code: str, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields or []

    def as_json(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


def respond(
    sandbox: SalesforceSandbox, kind: str, match: re.Match[str], method: str,
    params: dict[str, list[str]], body: bytes,
) -> Reply:  # fmt: skip
    from flow_assets.sandbox.salesforce import _errors, _not_found

    allowed = {"collections": ("POST", "PATCH", "DELETE"), "collections_upsert": ("PATCH",)}
    if method not in allowed[kind]:
        return _errors(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. "
                       f"Allowed are {','.join(allowed[kind])}")  # fmt: skip
    if method == "DELETE":
        ids = [i for i in ",".join(params.get("ids", [])).split(",") if i]
        all_or_none = (params.get("allOrNone") or ["false"])[0].lower() == "true"
        records: list[Any] = [{"Id": i} for i in ids]
        if not ids:
            return _errors(400, "MISSING_ARGUMENT", "ids parameter not specified")
    else:
        try:
            doc = json.loads(body or b"null")
        except ValueError:
            return _errors(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
        if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
            return _errors(400, "JSON_PARSER_ERROR", "records: a list of sObjects is required")
        records, all_or_none = doc["records"], doc.get("allOrNone") is True
    if len(records) > MAX_RECORDS:
        return _errors(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than "
                       f"{MAX_RECORDS} records into this call")  # fmt: skip
    external = None
    if kind == "collections_upsert":
        spec = sandbox._objects.get(unquote(match["obj"]).lower())
        if spec is None:
            return _not_found()
        field = next((f for f in spec.fields if f.name.lower() == unquote(match["ext"]).lower()),
                     None)  # fmt: skip
        if field is None or not field.external_id:
            return _errors(404, "NOT_FOUND", "Provided external ID field does not exist or is "
                           f"not accessible: {unquote(match['ext'])}")  # fmt: skip
        external = field.name
    return Reply(200, json_body(apply(sandbox, method, external, records, all_or_none)))


def apply(
    sandbox: SalesforceSandbox, method: str, external: str | None, records: list[Any],
    all_or_none: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """`records` written as one sObject Collections call would (method POST insert, PATCH
    update or upsert by `external`, DELETE): one result per record, in their order. Bulk API
    2.0 jobs apply their records here too, so both refuse the same records the same way."""
    with _WRITE_LOCK:
        return _Batch(sandbox, method, external, all_or_none).run(records)


class _Batch:
    """One call's records applied to copies of the frames, committed only if allowed."""

    def __init__(
        self, sandbox: SalesforceSandbox, method: str, external: str | None, all_or_none: bool
    ):
        self.sandbox, self.method, self.external = sandbox, method, external
        self.all_or_none = all_or_none
        self.frames: dict[str, pl.DataFrame] = {}
        self.changed: dict[str, dict[int, dict[str, Any]]] = {}  # row -> the whole new row
        self.added: dict[str, list[dict[str, Any]]] = {}
        now = datetime.now(UTC)  # Salesforce keeps milliseconds
        self.now = now.replace(microsecond=now.microsecond // 1000 * 1000)

    def run(self, records: list[Any]) -> list[dict[str, Any]]:
        results = []
        for record in records:
            try:
                results.append(self._one(record))
            except RecordError as exc:
                result: dict[str, Any] = {"success": False, "errors": [exc.as_json()]}
                if isinstance(record, dict) and self.method != "POST" and record.get("Id"):
                    result = {"id": record["Id"], **result}
                if self.external is not None:
                    result["created"] = False
                results.append(result)
        if self.all_or_none and not all(r["success"] for r in results):
            for r in results:
                if r["success"]:
                    r.update(success=False, errors=[RecordError(*_ROLLED_BACK).as_json()])
                    if self.external is not None:
                        r["created"] = False
            return results
        self._commit()
        return results

    # --- one record ------------------------------------------------------------------

    def _one(self, record: Any) -> dict[str, Any]:
        if self.method == "DELETE":
            return self._delete(str(record["Id"]))
        if not isinstance(record, dict):
            raise RecordError("JSON_PARSER_ERROR", "a record must be a JSON object")
        kind = (record.get("attributes") or {}).get("type")
        spec = self.sandbox._objects.get(str(kind).lower()) if kind else None
        if spec is None:
            raise RecordError("INVALID_TYPE", "Must send a concrete entity type.")
        values = {k: v for k, v in record.items() if k != "attributes"}
        if self.method == "POST":
            return self._create(spec, values)
        if self.external is not None:
            key = values.get(self.external)
            if key in (None, ""):
                raise RecordError("MISSING_ARGUMENT", f"{self.external} not specified",
                                  [self.external])  # fmt: skip
            row = self._find(spec, self.external, key)
            if row is None:
                return {**self._create(spec, values), "created": True}
            return {**self._update(spec, row, values), "created": False}
        record_id = values.pop("Id", None)
        if not record_id:
            raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        return self._update(spec, self._row(spec, str(record_id)), values)

    def _create(self, spec: data.ObjectSpec, values: dict) -> dict[str, Any]:
        typed = self._typed(spec, values, creating=True)
        missing = [
            f.name for f in spec.fields
            if _createable(f) and not f.nillable and f.type != "boolean" and typed.get(f.name) is None
        ]  # fmt: skip
        if missing:
            raise RecordError("REQUIRED_FIELD_MISSING",
                              f"Required fields are missing: [{', '.join(missing)}]", missing)  # fmt: skip
        self._unique(spec, typed, None)
        frame = self._frame(spec)
        number = frame.height + len(self.added.get(spec.name, [])) + 1
        row = {f.name: None for f in spec.fields} | {
            f.name: False for f in spec.fields if f.type == "boolean"
        }
        row |= typed | {"Id": data.record_id(spec.key_prefix, number), "IsDeleted": False,
                        "CreatedDate": self.now}  # fmt: skip
        if spec.name == "Opportunity" and "Probability" not in values:
            row["Probability"] = {s: p for s, p, _ in data.STAGES}.get(row["StageName"])
        self.added.setdefault(spec.name, []).append(self._stamp(spec, row))
        return {"id": row["Id"], "success": True, "errors": []}

    def _update(self, spec: data.ObjectSpec, row: int, values: dict) -> dict[str, Any]:
        typed = self._typed(spec, values, creating=False)
        current = self._current(spec, row)
        for name in [f.name for f in spec.fields if not f.nillable and f.type != "boolean"]:
            if name in typed and typed[name] is None:
                raise RecordError("REQUIRED_FIELD_MISSING",
                                  f"Required fields are missing: [{name}]", [name])  # fmt: skip
        self._unique(spec, typed, current["Id"])
        self.changed.setdefault(spec.name, {})[row] = self._stamp(spec, current | typed)
        return {"id": current["Id"], "success": True, "errors": []}

    def _delete(self, record_id: str) -> dict[str, Any]:
        spec = next((s for s in data.OBJECTS.values() if record_id.startswith(s.key_prefix)), None)
        if spec is None or len(record_id) not in (15, 18):
            raise RecordError("MALFORMED_ID", f"malformed id {record_id}")
        row = self._row(spec, record_id)
        current = self._current(spec, row)
        self.changed.setdefault(spec.name, {})[row] = self._stamp(
            spec, current | {"IsDeleted": True}
        )
        return {"id": current["Id"], "success": True, "errors": []}

    # --- checks ----------------------------------------------------------------------

    def _typed(self, spec: data.ObjectSpec, values: dict, creating: bool) -> dict[str, Any]:
        fields = {f.name.lower(): f for f in spec.fields}
        out = {}
        for name, value in values.items():
            f = fields.get(name.lower())
            if f is None:
                raise RecordError("INVALID_FIELD",
                                  f"No such column '{name}' on sobject of type {spec.name}", [name])  # fmt: skip
            if not _createable(f) or (not creating and f.name == "Id"):
                verb = "create" if creating else "update"
                raise RecordError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to {verb} fields: {f.name}. Please check the security settings of "
                    "this field and verify that it is read/write for your profile or permission "
                    "set.", [f.name],
                )  # fmt: skip
            out[f.name] = _value(spec, f, value)
        return out

    def _unique(self, spec: data.ObjectSpec, typed: dict, own_id: str | None) -> None:
        for f in spec.fields:
            value = typed.get(f.name)
            if not f.external_id or value is None:
                continue
            other = self._find(spec, f.name, value)
            if other is not None and self._current(spec, other)["Id"] != own_id:
                raise RecordError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {f.name} duplicates value on record with id: "
                    f"{self._current(spec, other)['Id']}", [f.name],
                )  # fmt: skip

    # --- the data --------------------------------------------------------------------

    def _frame(self, spec: data.ObjectSpec) -> pl.DataFrame:
        if spec.name not in self.frames:
            self.frames[spec.name] = self.sandbox.frame(spec.name)
        return self.frames[spec.name]

    def _row(self, spec: data.ObjectSpec, record_id: str) -> int:
        row = data.record_number(record_id, spec.key_prefix)
        frame = self._frame(spec)
        added = len(self.added.get(spec.name, []))
        if row is None or len(record_id) not in (15, 18) or row >= frame.height + added:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        if self._current(spec, row)["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted")
        return row

    def _current(self, spec: data.ObjectSpec, row: int) -> dict[str, Any]:
        """The row as this call has left it so far."""
        frame = self._frame(spec)
        if row >= frame.height:
            return self.added[spec.name][row - frame.height]
        changed = self.changed.get(spec.name, {})
        return changed[row] if row in changed else frame.row(row, named=True)

    def _find(self, spec: data.ObjectSpec, field: str, value: Any) -> int | None:
        """The live record whose `field` is `value`, as this call has left the data."""
        frame = self._frame(spec)
        for row, new in [*self.changed.get(spec.name, {}).items(),
                         *((frame.height + i, r) for i, r in enumerate(self.added.get(spec.name, [])))]:  # fmt: skip
            if new[field] == value and not new["IsDeleted"]:
                return row
        hits = frame.with_row_index("_row").filter((pl.col(field) == value) & ~pl.col("IsDeleted"))[
            "_row"
        ]
        for row in hits.to_list():
            if row not in self.changed.get(spec.name, {}):
                return int(row)
        return None

    def _stamp(self, spec: data.ObjectSpec, row: dict[str, Any]) -> dict[str, Any]:
        row = row | {"LastModifiedDate": self.now, "SystemModstamp": self.now}
        if spec.name == "Opportunity":
            row |= {"IsClosed": row["StageName"].startswith("Closed"),
                    "IsWon": row["StageName"] == "Closed Won"}  # fmt: skip
        return row

    def _commit(self) -> None:
        for name in set(self.changed) | set(self.added):
            spec = data.OBJECTS[name]
            frame = self._frame(spec)
            schema = frame.schema
            changed = self.changed.get(name, {})
            if changed:
                rows = pl.DataFrame(list(changed.values()), schema=schema, orient="row")
                at = pl.Series("_row", list(changed), dtype=pl.UInt32)
                frame = (
                    pl.concat([frame.with_row_index("_row").filter(~pl.col("_row").is_in(at)),
                               rows.with_columns(at).select("_row", *schema)])
                    .sort("_row").drop("_row")
                )  # fmt: skip
            if self.added.get(name):
                frame = pl.concat([frame, pl.DataFrame(self.added[name], schema=schema)])
            self.sandbox.replace_frame(name, frame)


def _createable(f: data.FieldSpec) -> bool:
    return bool(f.describe()["createable"])


def _value(spec: data.ObjectSpec, f: data.FieldSpec, value: Any) -> Any:
    """The JSON value as the field's type, or the documented per-record error."""
    if value is None:
        return None
    wrong = RecordError("INVALID_TYPE_ON_FIELD_IN_RECORD",
                        f"{f.name}: value not of required type", [f.name])  # fmt: skip
    if f.type in _NUMERIC or f.type == "int":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong
        return int(value) if f.type == "int" else float(value)
    if f.type == "boolean":
        if not isinstance(value, bool):
            raise wrong
        return value
    if not isinstance(value, str):
        raise wrong
    try:
        if f.type == "date":
            return date.fromisoformat(value[:10])
        if f.type == "datetime":
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        raise wrong from None
    if f.length and len(value) > f.length:
        raise RecordError("STRING_TOO_LONG",
                          f"{f.label}: data value too large (max length={f.length})", [f.name])  # fmt: skip
    return value
