"""The Zendesk sandbox's ticket writes, as the Tickets and Job Statuses APIs document them:
create_many and update_many (up to 100 tickets a call) queue a job and answer its job_status;
GET job_statuses/{id} shows it queued -> working -> completed (a step a poll, or all at once once
it is `job_seconds` old), and only a completed job has changed the tickets. List Tickets (with
its external_id filter), Show Ticket and Show Multiple Tickets read them back.

The result shapes are Zendesk's: a created ticket {"id", "index"}; a refused create
{"index", "error": "TicketCreateFailed", "details": "Description: cannot be blank"} (the shape
Zendesk answers, github.com/cloudbees-oss/zendesk-java-client/issues/98); an update
{"id", "action": "update", "success", "status"}, refused with "error" and "details". A job none
of whose tickets was written ends "failed". At most 30 jobs may be queued or working (Zendesk's
job limit); another is answered 429 with Retry-After."""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flow_assets.sandbox.server import Reply, json_body

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flow_assets.sandbox.zendesk import ZendeskSandbox

MAX_PER_CALL = 100  # tickets per create_many / update_many / show_many
MAX_JOBS = 30  # jobs queued or working at once
PRIORITIES = ("urgent", "high", "normal", "low")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
TYPES = ("problem", "incident", "question", "task")
ADMIN_ID = 1  # users/me: the credentials' own user, requester of tickets that name none
GROUPS = (20000, 20001, 20002)  # the groups build_records assigns
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_DONE = ("completed", "failed")


class Refused(Exception):
    """A ticket Zendesk will not write: the `details` of its job result."""


def _error(status: int, error: str, description: str, **headers: str) -> Reply:
    return Reply(status, json_body({"error": error, "description": description}), headers)


@dataclass
class Job:
    id: str
    kind: str  # "create" or "update"
    tickets: list[dict[str, Any]]
    queued_at: float
    status: str = "queued"
    results: list[dict[str, Any]] | None = None
    message: str | None = None
    polls: int = 0


@dataclass
class TicketWrites:
    """The writes of one sandbox: its jobs, and how many calls each endpoint had (`calls`)."""

    sandbox: ZendeskSandbox
    job_seconds: float = 2.0  # a job not polled to its end completes this long after queueing
    jobs: dict[str, Job] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def respond(self, method: str, path: str, query: dict[str, str],
                headers: Mapping[str, str], body: bytes) -> Reply | None:  # fmt: skip
        """The answer to a write (or a read of tickets by id or external_id); None for a
        request that is not one of these."""
        if not path.startswith("/api/v2/"):
            return None
        parts = path.removesuffix(".json").split("/")[3:]  # after /api/v2/
        route = {
            ("POST", "tickets", "create_many"): "create_many",
            ("PUT", "tickets", "update_many"): "update_many",
            ("GET", "tickets"): "list",
            ("GET", "tickets", "show_many"): "show_many",
        }.get((method, *parts))
        if route is None and method == "GET" and len(parts) == 2:
            if parts[0] == "tickets" and parts[1].isdigit():
                route = "show"
            elif parts[0] == "job_statuses":
                route = "job_status"
        if route is None:
            return None
        caller = self.sandbox._caller(headers)
        if caller is None:
            return self.sandbox._unauthorized(headers)
        if caller == "anonymous":
            return _error(401, "Couldn't authenticate you", "Authentication required")
        with self._lock:
            self.calls[route] += 1
            self._age_jobs()
            if route in ("create_many", "update_many"):
                return self._queue(route, query, body)
            if route == "job_status":
                return self._poll(parts[1])
            return self._read(route, parts, query)

    # --- jobs ----------------------------------------------------------------------

    def _queue(self, route: str, query: dict[str, str], body: bytes) -> Reply:
        try:
            doc = json.loads(body or b"null")
        except ValueError:
            return _error(400, "InvalidJSON", "The request body is not valid JSON")
        if not isinstance(doc, dict):
            return _error(400, "InvalidValue", "The request body must be a JSON object")
        tickets = doc.get("tickets")
        if route == "update_many" and "ids" in query:  # bulk: one change for every id
            change = doc.get("ticket")
            ids = [i for i in query["ids"].split(",") if i]
            if not isinstance(change, dict) or not all(i.isdigit() for i in ids):
                return _error(400, "InvalidValue", "ids and a ticket object are required")
            tickets = [{**change, "id": int(i)} for i in ids]
        if not isinstance(tickets, list) or not all(isinstance(t, dict) for t in tickets):
            return _error(400, "InvalidValue", "tickets: an array of ticket objects is required")
        if not 1 <= len(tickets) <= MAX_PER_CALL:
            return _error(400, "InvalidValue", f"tickets: 1 to {MAX_PER_CALL} tickets a request")
        if route == "update_many" and not all(isinstance(t.get("id"), int) for t in tickets):
            return _error(400, "InvalidValue", "tickets: every ticket needs its id")
        active = [j for j in self.jobs.values() if j.status not in _DONE]
        if len(active) >= MAX_JOBS:
            oldest = min(j.queued_at for j in active)
            wait = max(1, math.ceil(oldest + self.job_seconds - time.monotonic()))
            return _error(429, "TooManyJobs", f"Number of allowed concurrent jobs ({MAX_JOBS}) "
                          "exceeded", **{"Retry-After": str(wait)})  # fmt: skip
        job = Job(secrets.token_hex(16), route.removesuffix("_many"), tickets, time.monotonic())
        self.jobs[job.id] = job
        return self._job_reply(job)

    def _poll(self, job_id: str) -> Reply:
        job = self.jobs.get(job_id)
        if job is None:
            return _error(404, "RecordNotFound", "Not found")
        job.polls += 1
        if job.status == "queued":
            job.status = "working"
        elif job.status == "working":
            self._run(job)
        return self._job_reply(job)

    def _age_jobs(self) -> None:
        """Jobs run whether or not anyone polls them: those old enough have finished."""
        now = time.monotonic()
        for job in self.jobs.values():
            if job.status not in _DONE and now - job.queued_at >= self.job_seconds:
                self._run(job)

    def _job_reply(self, job: Job) -> Reply:
        done = job.status in _DONE
        working = job.status == "working"
        progress = len(job.tickets) if done else (len(job.tickets) // 2 if working else None)
        return Reply(200, json_body({"job_status": {
            "id": job.id, "url": f"{self.sandbox.url}/api/v2/job_statuses/{job.id}.json",
            "total": len(job.tickets), "progress": progress, "status": job.status,
            "message": job.message, "results": job.results if done else None,
        }}))  # fmt: skip

    def _run(self, job: Job) -> None:
        """The job's writes, all at once: the tickets change only when it completes."""
        tickets = list(self.sandbox._data["tickets"])
        by_id = {t["id"]: t for t in tickets if t["status"] != "deleted"}
        stamp = datetime.fromtimestamp(int(self.sandbox.now()), UTC)
        results: list[dict[str, Any]] = []
        for index, body in enumerate(job.tickets):
            try:
                if job.kind == "create":
                    next_id = max((t["id"] for t in tickets), default=999) + 1
                    ticket = self._created(body, next_id, stamp)
                    tickets.append(ticket)
                    by_id[ticket["id"]] = ticket
                    results.append({"id": ticket["id"], "index": index})
                else:
                    current = by_id.get(body["id"])
                    if current is None:
                        raise LookupError
                    changed = self._updated(current, body, stamp)
                    if changed is not current:
                        tickets[tickets.index(current)] = by_id[current["id"]] = changed
                    results.append({"id": current["id"], "action": "update", "success": True,
                                    "status": "Updated"})  # fmt: skip
            except Refused as exc:
                code = "TicketCreateFailed" if job.kind == "create" else "TicketUpdateFailed"
                results.append(self._failed(job.kind, index, body, code, str(exc)))
            except LookupError:
                results.append(self._failed(job.kind, index, body, "RecordNotFound",
                                            "Ticket not found"))  # fmt: skip
        # The exports list records by update second, then id (what their cursors name).
        tickets.sort(key=lambda t: (t["updated_at"], t["id"]))
        self.sandbox._data["tickets"] = tickets  # one assignment: readers see before or after
        failed = all("error" in r for r in results)
        job.status, job.results = ("failed" if failed else "completed"), results
        job.message = f"{'Failed' if failed else 'Completed'} at {stamp:%Y-%m-%d %H:%M:%S} +0000"

    @staticmethod
    def _failed(kind: str, index: int, body: dict, code: str, details: str) -> dict[str, Any]:
        if kind == "create":
            return {"index": index, "error": code, "details": details}
        return {"id": body.get("id"), "action": "update", "success": False, "status": "Failed",
                "error": code, "details": details}  # fmt: skip

    # --- tickets -------------------------------------------------------------------

    def _created(self, body: dict[str, Any], ticket_id: int, stamp: datetime) -> dict[str, Any]:
        comment = body.get("comment") if isinstance(body.get("comment"), dict) else {}
        first = comment.get("body") or comment.get("html_body") or body.get("description")
        blank = not isinstance(first, str) or not first.strip()
        fields = self._fields(body, ["Description: cannot be blank"] if blank else [])
        ticket: dict[str, Any] = {
            "id": ticket_id, "url": f"{self.sandbox.url}/api/v2/tickets/{ticket_id}.json",
            "external_id": None, "type": None, "subject": None, "raw_subject": None,
            "description": first, "priority": None, "status": "new", "recipient": None,
            "requester_id": ADMIN_ID, "submitter_id": ADMIN_ID, "assignee_id": None,
            "organization_id": None, "group_id": None, "problem_id": None,
            "has_incidents": False, "is_public": True, "tags": [], "collaborator_ids": [],
            "follower_ids": [], "due_at": None, "via": {"channel": "api"}, "custom_fields": [],
            "satisfaction_rating": None, "created_at": stamp.strftime(_TIME),
            "updated_at": stamp.strftime(_TIME), "generated_timestamp": int(stamp.timestamp()),
        }  # fmt: skip
        ticket.update(fields)
        if ticket["status"] == "new" and ticket["assignee_id"] is not None:
            ticket["status"] = "open"  # a ticket with an assignee is no longer new
        if "organization_id" not in body:
            requester = self._user(ticket["requester_id"])
            ticket["organization_id"] = requester.get("organization_id") if requester else None
        return ticket

    def _updated(self, current: dict[str, Any], body: dict[str, Any],
                 stamp: datetime) -> dict[str, Any]:  # fmt: skip
        """The ticket after the update: `current` itself when nothing changes (no ticket event:
        updated_at and generated_timestamp stay)."""
        if current["status"] == "closed":
            raise Refused("Status: closed prevents ticket update")
        changes = {k: v for k, v in self._fields(body, []).items() if current.get(k) != v}
        if not changes and not isinstance(body.get("comment"), dict):
            return current
        return {**current, **changes, "updated_at": stamp.strftime(_TIME),
                "generated_timestamp": int(stamp.timestamp())}  # fmt: skip

    def _fields(self, body: dict[str, Any], problems: list[str]) -> dict[str, Any]:
        """The writable fields `body` sets, validated as Zendesk validates them; refused with
        `problems` and any found here."""
        out: dict[str, Any] = {}
        for name, allowed, label in (("priority", PRIORITIES, "Priority"),
                                     ("type", TYPES, "Type"), ("status", STATUSES, "Status")):  # fmt: skip
            if name in body:
                value = body[name]
                if name == "status" and value is None:
                    continue  # no status: the ticket keeps its own
                if value is not None and value not in allowed:
                    problems.append(f"{label}: {value} is not valid")
                else:
                    out[name] = value
        for name in ("subject", "external_id"):
            if name in body:
                out[name] = None if body[name] is None else str(body[name])
        if "subject" in out:
            out["raw_subject"] = out["subject"]
        if "tags" in body:
            tags = body["tags"] or []
            out["tags"] = list(dict.fromkeys(str(t) for t in tags))
        person = body.get("requester")
        if isinstance(person, dict):
            if "@" not in str(person.get("email") or ""):
                problems.append("Requester: Email is not properly formatted")
        elif body.get("requester_id") is not None:  # null: the ticket keeps its requester
            if self._user(body["requester_id"]) is None:
                problems.append("Requester: is invalid")
            out["requester_id"] = body["requester_id"]
        if body.get("assignee_id") is not None:
            assignee = self._user(body["assignee_id"])
            if assignee is None or assignee.get("role") not in ("agent", "admin"):
                problems.append("Assignee: is not an agent")
        if body.get("organization_id") is not None:
            orgs = {o["id"] for o in self.sandbox._data["organizations"]}
            if body["organization_id"] not in orgs:
                problems.append("Organization: is invalid")
        if body.get("group_id") is not None and body["group_id"] not in GROUPS:
            problems.append("Group: is invalid")
        for name in ("assignee_id", "organization_id", "group_id", "custom_fields"):
            if name in body:
                out[name] = body[name]
        if "due_at" in body:
            out["due_at"] = self._due(body["due_at"], problems)
        if problems:
            raise Refused("; ".join(problems))
        if isinstance(person, dict):
            out["requester_id"] = self._requester(person)
        return out

    @staticmethod
    def _due(value: Any, problems: list[str]) -> str | None:
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            problems.append("Due at: is invalid")
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime(_TIME)

    def _user(self, user_id: Any) -> dict[str, Any] | None:
        if user_id == ADMIN_ID:
            return {"id": ADMIN_ID, "role": "admin", "organization_id": None}
        return next((u for u in self.sandbox._data["users"] if u["id"] == user_id), None)

    def _requester(self, person: dict[str, Any]) -> int:
        """The user with the requester's email, created as an end user if there is none."""
        email = str(person["email"]).strip().lower()
        users = self.sandbox._data["users"]
        found = next((u for u in users if str(u.get("email") or "").lower() == email), None)
        if found is not None:
            return found["id"]
        stamp = datetime.fromtimestamp(int(self.sandbox.now()), UTC).strftime(_TIME)
        user_id = max(u["id"] for u in users) + 1
        self.sandbox._data["users"] = [*users, {
            "id": user_id, "url": f"{self.sandbox.url}/api/v2/users/{user_id}.json",
            "name": person.get("name") or email.split("@")[0], "email": email, "phone": None,
            "role": "end-user", "organization_id": None, "external_id": None,
            "time_zone": "UTC", "locale": "en-US", "active": True, "verified": False,
            "suspended": False, "tags": [], "user_fields": {}, "photo": None,
            "last_login_at": None, "created_at": stamp, "updated_at": stamp,
        }]  # fmt: skip
        return user_id

    # --- reads ---------------------------------------------------------------------

    def _read(self, route: str, parts: list[str], query: dict[str, str]) -> Reply:
        """Show Ticket, Show Multiple Tickets and List Tickets (offset paging, 100 a page at
        most, optionally by external_id); deleted tickets are not listed or shown."""
        live = [t for t in self.sandbox._data["tickets"] if t["status"] != "deleted"]
        if route == "show":
            found = next((t for t in live if t["id"] == int(parts[1])), None)
            if found is None:
                return _error(404, "RecordNotFound", "Not found")
            return Reply(200, json_body({"ticket": found}))
        if route == "show_many":
            try:
                ids = {int(i) for i in query.get("ids", "").split(",") if i}
            except ValueError:
                return _error(400, "InvalidValue", "ids: a comma-separated list of ticket ids")
            if len(ids) > MAX_PER_CALL:
                return _error(400, "InvalidValue", f"ids: at most {MAX_PER_CALL} ids")
            return Reply(200, json_body({"tickets": sorted((t for t in live if t["id"] in ids),
                                                           key=lambda t: t["id"])}))  # fmt: skip
        if "external_id" in query:
            live = [t for t in live if t["external_id"] == query["external_id"]]
        try:
            page, per_page = int(query.get("page", 1)), int(query.get("per_page", 100))
            page = max(1, page)
        except ValueError:
            return _error(400, "InvalidValue", "page and per_page must be integers")
        per_page = max(1, min(per_page, 100))
        rows = sorted(live, key=lambda t: t["id"])
        chunk = rows[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(rows)
        base = f"{self.sandbox.url}/api/v2/tickets.json?"
        extra = {k: v for k, v in query.items() if k not in ("page", "per_page")}

        def link(number: int) -> str:
            return base + urlencode({**extra, "page": number, "per_page": per_page})

        return Reply(200, json_body({
            "tickets": chunk, "count": len(rows),
            "next_page": link(page + 1) if more else None,
            "previous_page": link(page - 1) if page > 1 else None,
        }))  # fmt: skip
