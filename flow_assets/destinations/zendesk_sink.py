"""The Zendesk destination: tickets created (write insert), or created and updated by external_id
(write upsert), 100 a job; each job is polled to its end, and each ticket Zendesk refuses goes to
the flow's error location with the error code and details Zendesk gave it.

What the API decides here (developer.zendesk.com, Tickets and Job Statuses):
- create_many and update_many take up to 100 tickets and answer with a queued job_status; the
  job's results say what became of each ticket: a create's by `index` (its place in the
  request), an update's by ticket `id`; a refused one has `error` and `details`.
- A ticket is created with its first comment (`comment.body`, required); `description` is that
  comment and read-only afterwards. So a record's `description` becomes the first comment on
  create and is never sent on update (a comment added by every run would change the ticket on
  every re-run).
- external_id need not be unique in Zendesk, so an upsert updates the one ticket found, refuses
  a record whose external_id several tickets share, and sends one record per external_id a batch.
- Tickets are found by List Tickets' external_id filter: one call per external_id, which reads
  what is stored (its own limit, 100 calls a minute, 300 with High Volume, is met with 429 and
  Retry-After, which is honoured). The Search API could look up a whole batch in one call, but it
  indexes new tickets only after "up to a few minutes": a re-run soon after a run would not find
  the tickets just created and would create them again.
- A create is repeated only when Zendesk cannot have acted on it (429, including its limit of 30
  queued jobs; 401 and a new token; no connection made); after a 5xx or a lost answer the job may
  be queued, so the run fails saying so rather than create the tickets twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl

from flow_assets.connectors.errors import AuthError, ConnectorError, MalformedResponse
from flow_assets.connectors.http import TransientError, parse_json, status_of
from flow_assets.connectors.zendesk import FIELDS, ZendeskClient, ZendeskConnection
from flow_assets.destinations.saas_sink import RecordResult, SaasSinkIOManager, SinkWriter
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import ZendeskSinkSettings

BATCH = 100  # tickets per create_many / update_many job
_ENDED = ("completed", "failed", "killed")


_TEXT, _INT = (pl.String,), (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt32, pl.UInt64)
# The ticket fields a record may carry, and the Polars types each may have (or Null).
WRITABLE: dict[str, tuple[type[pl.DataType], ...]] = {
    "external_id": _TEXT, "subject": _TEXT, "description": _TEXT, "priority": _TEXT,
    "status": _TEXT, "type": _TEXT, "tags": (pl.List,), "requester_id": _INT,
    "requester": (pl.Struct,), "assignee_id": _INT, "organization_id": _INT, "group_id": _INT,
    "due_at": (pl.Datetime, pl.Date, pl.String), "custom_fields": (pl.List,),
}  # fmt: skip


def _values(value: Any) -> Iterator[str]:
    """A record's values as text, nested ones too (for keeping them out of reasons)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _values(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def reason(result: dict[str, Any], record: dict[str, Any]) -> str:
    """Zendesk's words for a refused ticket: its error code and details, with any of the
    record's own values Zendesk quoted replaced (a masked field must not reach the errors)."""
    details = result.get("details") or result.get("description") or "no details given"
    if isinstance(details, dict):  # RecordInvalid: {"field": [{"description": ...}, ...]}
        details = "; ".join(
            str(d.get("description", d)) if isinstance(d, dict) else str(d)
            for items in details.values() for d in (items if isinstance(items, list) else [items])
        )  # fmt: skip
    text = f"{result.get('error') or 'Failed'}: {details}"
    for value in sorted(set(_values(record)), key=len, reverse=True):
        if len(value) >= 3:
            text = text.replace(value, "<value>")
    return text


def _refused(code: str, message: str) -> RecordResult:
    return RecordResult(False, error=f"{code}: {message}")


def _failed(result: dict[str, Any]) -> bool:
    return bool(result.get("error")) or result.get("success") is False or (
        str(result.get("status", "")).lower() == "failed"
    )  # fmt: skip


class ZendeskWriter:
    """One flow's ticket writes to one Zendesk account, through jobs of 100 tickets."""

    batch_size = BATCH

    def __init__(self, client: ZendeskClient, settings: ZendeskSinkSettings, write: str,
                 sleep: Callable[[float], None] = time.sleep, first_wait: float = 0.2,
                 max_wait: float = 5.0, deadline: float = 900.0):  # fmt: skip
        self.client, self.settings, self.write_kind = client, settings, write
        self.target = f"zendesk://{settings.connection}/{settings.object} ({write})"
        # Polling a job: first_wait, doubling up to max_wait, for at most `deadline` seconds.
        self.sleep, self.first_wait, self.max_wait, self.deadline = (
            sleep, first_wait, max_wait, deadline)  # fmt: skip

    def columns(self, schema: pl.Schema) -> list[str]:
        """The fields sent: the records' own (Flowbridge's _fb_ columns stay behind), each a
        writable ticket field of a type Zendesk takes."""
        names = [n for n in schema if not n.startswith("_fb_")]
        for name in names:
            if name not in WRITABLE:
                if name in FIELDS["tickets"]:
                    raise ConnectorError(
                        f"tickets.{name} is set by Zendesk, not written: drop it with a map task "
                        "(map_all: {exclude: [...]})"
                    )
                raise ConnectorError(
                    f"tickets has no field '{name}'{did_you_mean(name, list(WRITABLE))}: rename "
                    f"or drop it with a map task; writable: {', '.join(WRITABLE)}"
                )
            if not isinstance(schema[name], (*WRITABLE[name], pl.Null)):
                kinds = " or ".join(k.__name__ for k in WRITABLE[name])
                raise ConnectorError(f"tickets.{name} takes {kinds}, but the records hold "
                                     f"{schema[name]}: convert it with a map task")  # fmt: skip
        needed = {"upsert": "external_id", "insert": "description"}[self.write_kind]
        if needed not in names:
            why = "the key tickets are matched on" if needed == "external_id" else (
                "the first comment, without which Zendesk creates no ticket")  # fmt: skip
            raise ConnectorError(
                f"write {self.write_kind} to tickets needs the field {needed} ({why}) in every "
                "record; map it from the source"
            )
        return names

    def write(self, batch: pl.DataFrame) -> list[RecordResult]:
        """At most 100 records; one result per record, in the batch's order."""
        records: list[dict[str, Any]] = json.loads(batch.write_json())  # dates ISO, nulls null
        results: list[RecordResult | None] = [None] * len(records)
        creates: list[int] = []
        updates: dict[int, int] = {}  # record's place -> the ticket id it updates
        seen: set[str] = set()
        for i, record in enumerate(records):
            key = record.get("external_id")
            if self.write_kind == "insert":
                creates.append(i)
            elif key is None or key == "":
                results[i] = _refused("MissingExternalId", "write upsert matches tickets on "
                                      "external_id; this record has none")  # fmt: skip
            elif key in seen:
                results[i] = _refused("DuplicateExternalId", "an earlier record of the same "
                                      "batch has this external_id; only that one was written")  # fmt: skip
            else:
                seen.add(key)
                found = self._find(key)
                if len(found) > 1:
                    results[i] = _refused("AmbiguousExternalId", f"{len(found)} tickets have "
                                          "this external_id; give them distinct ones")  # fmt: skip
                elif found:
                    updates[i] = found[0]
                else:
                    creates.append(i)
        if updates:
            tickets = [{**{k: v for k, v in records[i].items() if k != "description"}, "id": t}
                       for i, t in updates.items()]  # fmt: skip
            job = self._job("PUT", "/api/v2/tickets/update_many.json", tickets, idempotent=True)
            by_id = {r.get("id"): r for r in job.get("results") or [] if isinstance(r, dict)}
            for i, ticket_id in updates.items():
                results[i] = self._result(by_id.get(ticket_id), records[i], job, created=False)
        if creates:
            tickets = [self._ticket(records[i]) for i in creates]
            job = self._job("POST", "/api/v2/tickets/create_many.json", tickets, idempotent=False)
            by_index = {r.get("index"): r for r in job.get("results") or [] if isinstance(r, dict)}
            for place, i in enumerate(creates):
                results[i] = self._result(by_index.get(place), records[i], job, created=True)
        return [r if r is not None else _refused("NotWritten", "no result") for r in results]

    @staticmethod
    def _ticket(record: dict[str, Any]) -> dict[str, Any]:
        """A record as create_many takes it: its description becomes the first comment."""
        ticket = {k: v for k, v in record.items() if k != "description"}
        if record.get("description") is not None:
            ticket["comment"] = {"body": record["description"]}
        return ticket

    def _result(self, result: dict[str, Any] | None, record: dict[str, Any],
                job: dict[str, Any], created: bool) -> RecordResult:  # fmt: skip
        if result is None:
            then = ("it may have been created: check Zendesk before sending it again"
                    if created and self.write_kind == "insert" else "send it again")  # fmt: skip
            return _refused("NoResult", f"job {job.get('id')} ended {job.get('status')} without "
                            f"a result for this ticket; {then}")  # fmt: skip
        if _failed(result):
            return RecordResult(False, error=reason(result, record))
        return RecordResult(True, created=created)

    def _find(self, external_id: str) -> list[int]:
        """The ids of the live tickets with this external_id (List Tickets' filter)."""
        body = self._call("GET", "/api/v2/tickets.json", params={"external_id": external_id})
        tickets = body.get("tickets") if isinstance(body, dict) else None
        if not isinstance(tickets, list):
            raise MalformedResponse(f"{self.target}: List Tickets answered without 'tickets'")
        return [t["id"] for t in tickets if isinstance(t, dict) and "id" in t]

    def _job(self, method: str, path: str, tickets: list[dict[str, Any]],
             idempotent: bool) -> dict[str, Any]:  # fmt: skip
        """Queue a job of these tickets and poll it to its end: its last job_status."""
        try:
            job = self._status(self._call(method, path, json={"tickets": tickets},
                                          idempotent=idempotent))  # fmt: skip
        except ConnectorError as exc:
            if not isinstance(exc.__cause__, TransientError):
                raise
            again = ("a re-run is safe once the job has run (give it a few minutes): it finds "
                     "the tickets created by external_id") if self.write_kind == "upsert" else (
                     "check Zendesk before re-running: an insert run again would create any of "
                     "these tickets that were created a second time")  # fmt: skip
            raise ConnectorError(f"{self.target}: {exc}; {again}") from exc
        wait, waited = self.first_wait, 0.0
        while job.get("status") not in _ENDED:
            if waited >= self.deadline:
                raise ConnectorError(
                    f"{self.target}: job {job.get('id')} still {job.get('status')} after "
                    f"{waited:.0f}s; its tickets may yet be written: look it up in Zendesk "
                    "(GET /api/v2/job_statuses/{id}) before sending them again"
                )
            self.sleep(wait)
            waited, wait = waited + wait, min(wait * 2, self.max_wait)
            job = self._status(self._call("GET", f"/api/v2/job_statuses/{job['id']}.json"))
        return job

    def _status(self, body: Any) -> dict[str, Any]:
        job = body.get("job_status") if isinstance(body, dict) else None
        if not isinstance(job, dict) or not job.get("id"):
            raise MalformedResponse(f"{self.target}: expected a job_status, got {type(body)}")
        return job

    def _call(self, method: str, path: str, idempotent: bool = True, **kwargs: Any) -> Any:
        try:
            return self.client.http.request(method, path, parse=parse_json,
                                            idempotent=idempotent, **kwargs)  # fmt: skip
        except AuthError:
            raise
        except ConnectorError as exc:
            if status_of(exc) == 401:
                raise AuthError(
                    f"connection '{self.client.connection}': Zendesk refused the credentials "
                    f"({exc}); check them (environment variables), or renew the token"
                ) from None
            if status_of(exc) == 403:
                raise AuthError(
                    f"connection '{self.client.connection}': not allowed to write tickets "
                    f"({exc}); it needs an agent's credentials, and an OAuth client the scope "
                    "'read write' (scope: in connections.yaml)"
                ) from None
            raise


class ZendeskIOManager(SaasSinkIOManager):
    """Writes a flow's records to Zendesk tickets; refused records go to the error location."""

    connection: ZendeskConnection

    def writer(self, settings_json: str, write: str, key: list[str], rows: int) -> SinkWriter:
        settings = ZendeskSinkSettings.model_validate_json(settings_json)
        return ZendeskWriter(self.connection.open(), settings, write)
