"""Local Zendesk Support API stand-in: the incremental exports (cursor-based tickets and users,
time-based organizations), users/me, ticket writes through jobs (zendesk_writes), API token and
OAuth client credentials auth, and injectable faults, with deterministic data, for tests and
demos."""

from __future__ import annotations

import base64
import json
import random
import secrets
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import polars as pl

from flow_assets.sandbox.faults import Fault
from flow_assets.sandbox.server import Reply, SandboxServer, basic_credentials, json_body
from flow_assets.sandbox.zendesk_writes import TicketWrites

FAULT_KINDS = ("expire_token", "429", "503", "malformed")
MAX_PER_PAGE = 1000
MIN_AGE_SECONDS = 60  # start_time must be at least a minute in the past
ADMIN_EMAIL = "admin@flowbridge.local"
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_JSON = "application/json; charset=utf-8"
_EXPORTS = {
    "/api/v2/incremental/tickets/cursor.json": ("tickets", True),
    "/api/v2/incremental/users/cursor.json": ("users", True),
    "/api/v2/incremental/organizations.json": ("organizations", False),
}
_TYPES = {
    "id": pl.Int64, "requester_id": pl.Int64, "submitter_id": pl.Int64,
    "assignee_id": pl.Int64, "organization_id": pl.Int64, "group_id": pl.Int64,
    "problem_id": pl.Int64, "generated_timestamp": pl.Int64,
    "has_incidents": pl.Boolean, "is_public": pl.Boolean, "active": pl.Boolean,
    "verified": pl.Boolean, "suspended": pl.Boolean, "shared_tickets": pl.Boolean,
    "shared_comments": pl.Boolean, "tags": pl.List(pl.String),
    "domain_names": pl.List(pl.String), "collaborator_ids": pl.List(pl.Int64),
    "follower_ids": pl.List(pl.Int64),
}  # fmt: skip
_TIMES = ("created_at", "updated_at", "due_at", "last_login_at", "deleted_at")
_NESTED = ("via", "custom_fields", "satisfaction_rating", "user_fields", "organization_fields",
           "photo", "fields")  # fmt: skip


def _error(status: int, error: str, description: str | None = None, **headers: str) -> Reply:
    body = {"error": error} if description is None else {"error": error, "description": description}
    return Reply(status, json_body(body), headers)


def _stamp(moment: datetime) -> str:
    return moment.strftime(_TIME_FORMAT)


def build_records(records: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Deterministic tickets (`records`), users (records // 2) and organizations (records // 10,
    at least 10 each) in Zendesk's JSON shape. Every 4th ticket shares its updated_at second
    with the one before it; every 9th is deleted."""
    rng = random.Random(seed)
    orgs, users, tickets = [], [], []
    for i in range(max(10, records // 10)):
        created = _EPOCH + timedelta(seconds=rng.randrange(0, 86400 * 30))
        updated = created + timedelta(seconds=rng.randrange(0, 86400 * 200))
        orgs.append({
            "id": 360000000 + i, "url": f"https://sandbox.zendesk.com/api/v2/organizations/{360000000 + i}.json",
            "name": f"Org {i}", "external_id": None if i % 3 else f"ext-{i}", "group_id": None,
            "details": f"details {i}", "notes": "", "shared_tickets": i % 2 == 0,
            "shared_comments": False, "domain_names": [f"org{i}.example"], "tags": ["sandbox"],
            "organization_fields": {"tier": "gold"}, "created_at": _stamp(created),
            "updated_at": _stamp(updated), "deleted_at": None,
        })  # fmt: skip
    roles = ("end-user", "end-user", "agent", "admin")
    for i in range(max(10, records // 2)):
        created = _EPOCH + timedelta(seconds=rng.randrange(0, 86400 * 60))
        updated = created + timedelta(seconds=rng.randrange(0, 86400 * 200))
        users.append({
            "id": 370000000 + i, "url": f"https://sandbox.zendesk.com/api/v2/users/{370000000 + i}.json",
            "name": f"User {i}", "email": f"user{i}@example.com",
            "phone": None if i % 2 else f"+1415555{i:04d}", "role": roles[i % 4],
            "organization_id": orgs[i % len(orgs)]["id"], "external_id": None,
            "time_zone": "UTC", "locale": "en-US", "active": i % 7 != 0, "verified": True,
            "suspended": False, "tags": [], "user_fields": {}, "photo": None,
            "last_login_at": None if i % 3 == 0 else _stamp(updated),
            "created_at": _stamp(created), "updated_at": _stamp(updated),
        })  # fmt: skip
    statuses = ("new", "open", "pending", "hold", "solved", "closed")
    previous = _EPOCH
    for i in range(records):
        created = _EPOCH + timedelta(seconds=rng.randrange(0, 86400 * 90))
        updated = created + timedelta(seconds=rng.randrange(0, 86400 * 200))
        if i % 4 == 3:
            updated = max(previous, created)  # a second shared with the ticket before
        previous = updated
        tid = 1000 + i
        tickets.append({
            "id": tid, "url": f"https://sandbox.zendesk.com/api/v2/tickets/{tid}.json",
            "external_id": None, "type": ("question", "incident", "problem", "task")[i % 4],
            "subject": f"Ticket {i}", "raw_subject": f"Ticket {i}",
            "description": f"Something happened ({i})", "priority": ("low", "normal", "high", None)[i % 4],
            "status": "deleted" if i % 9 == 8 else statuses[i % 6],
            "recipient": "support@sandbox.example", "requester_id": users[i % len(users)]["id"],
            "submitter_id": users[i % len(users)]["id"], "assignee_id": None if i % 5 == 0 else users[3]["id"],
            "organization_id": orgs[i % len(orgs)]["id"], "group_id": 20000 + i % 3,
            "problem_id": None, "has_incidents": False, "is_public": i % 6 != 5,
            "tags": ["sandbox", f"t{i % 5}"], "collaborator_ids": [], "follower_ids": [],
            "due_at": None if i % 4 else _stamp(created + timedelta(days=7)),
            "via": {"channel": "web"}, "custom_fields": [{"id": 1, "value": str(i)}],
            "satisfaction_rating": None, "created_at": _stamp(created),
            "updated_at": _stamp(updated), "generated_timestamp": int(updated.timestamp()),
        })  # fmt: skip
    return {"tickets": tickets, "users": users, "organizations": orgs}


def typed_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Records as a typed frame: nested objects left out, date-times as Datetime(us, UTC)."""
    names = [n for n in rows[0] if n not in _NESTED] if rows else []
    schema = {n: _TYPES.get(n, pl.String) for n in names}
    frame = pl.DataFrame([{n: r.get(n) for n in names} for r in rows], schema=schema, orient="row")
    return frame.with_columns(
        pl.col(n).str.to_datetime(_TIME_FORMAT, time_unit="us").dt.replace_time_zone("UTC")
        for n in names
        if n in _TIMES
    )


class ZendeskSandbox(SandboxServer):
    """A Zendesk Support API stand-in on 127.0.0.1 with deterministic data.

    Credentials: the API token `api_token` of the admin `email` (basic auth
    `{email}/token:{api_token}`), and an OAuth client (`client_id`, `client_secret`) whose
    client credentials grant on POST /oauth/tokens issues bearer tokens.
    """

    product = "Zendesk"
    content_type = _JSON
    fault_kinds = FAULT_KINDS

    def __init__(
        self,
        port: int = 0,
        records: int = 500,
        seed: int = 7,
        email: str = ADMIN_EMAIL,
        api_token: str = "sandbox-api-token",
        client_id: str = "flowbridge-sandbox",
        client_secret: str = "sandbox-secret",
    ) -> None:
        super().__init__(port)
        self.records = records
        self.seed = seed
        self.email = email
        self.api_token = api_token
        self.client_id = client_id
        self.client_secret = client_secret
        self._data = build_records(records, seed)
        # Export order: by update second, then id (what a cursor position names).
        for rows in self._data.values():
            rows.sort(key=lambda r: (r["updated_at"], r["id"]))
        self._access_tokens: set[str] = set()
        self._lock = threading.Lock()
        self.requests: list[str] = []  # paths with queries, in order (no credentials in them)
        self.now = time.time  # the sandbox's clock, for the one-minute start_time rule
        self.writes = TicketWrites(self)  # ticket writes and their jobs: see zendesk_writes

    # --- truth, credentials, faults ----------------------------------------------

    def frame(self, object_name: str) -> pl.DataFrame:
        """The typed truth behind an export: every record, deleted tickets included."""
        if object_name not in self._data:
            raise KeyError(f"unknown object {object_name!r}; known: {sorted(self._data)}")
        return typed_frame(self._data[object_name])

    def wire_records(self, object_name: str) -> list[dict[str, Any]]:
        return self._data[object_name]

    def issue_access_token(self) -> str:
        token = secrets.token_hex(32)
        with self._lock:
            self._access_tokens.add(token)
        return token

    def expire_tokens(self) -> None:
        with self._lock:
            self._access_tokens.clear()

    # --- requests ----------------------------------------------------------------

    def respond(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = urlsplit(raw_path)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            self.requests.append(target)
        if parts.path == "/oauth/tokens" and method == "POST":
            return self._token(headers, body)
        fault = self.faults.take(target)
        if fault is not None and fault.kind != "malformed":
            return self._fault_reply(fault, headers)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        reply = self.writes.respond(method, parts.path, query, headers, body) or self._route(
            method, parts.path, query, headers
        )
        if fault is not None:  # malformed: a 200 whose JSON stops half way
            return Reply(200, reply.body[: max(1, len(reply.body) // 2)])
        return reply

    def _fault_reply(self, fault: Fault, headers: Mapping[str, str]) -> Reply:
        if fault.kind == "expire_token":
            # Access tokens past their expires_in: every bearer token issued so far stops
            # working. (API tokens do not expire; a revoked one answers the same 401.)
            self.expire_tokens()
            return self._unauthorized(headers)
        seconds = "1" if fault.retry_after is None else f"{fault.retry_after:g}"
        if fault.kind == "503":
            return _error(503, "ServiceUnavailable", "Service temporarily unavailable",
                          **{"Retry-After": seconds})  # fmt: skip
        # Zendesk's 429 comes with Retry-After (seconds) and a short text body.
        return Reply(429, b"Rate limit exceeded", {"Retry-After": seconds,
                                                    "Content-Type": "text/plain"})  # fmt: skip

    def _unauthorized(self, headers: Mapping[str, str]) -> Reply:
        if (headers.get("Authorization") or "").startswith("Bearer "):
            return Reply(401, json_body({"error": "invalid_token", "error_description":
                          "The access token provided is expired, revoked, malformed or invalid "
                          "for other reasons."}))  # fmt: skip
        return _error(401, "Couldn't authenticate you")

    def _caller(self, headers: Mapping[str, str]) -> str | None:
        """'admin' for valid credentials, 'anonymous' for none, None for wrong ones."""
        value = headers.get("Authorization") or ""
        if not value:
            return "anonymous"
        scheme, _, credential = value.partition(" ")
        if scheme == "Bearer":
            with self._lock:
                return "admin" if credential in self._access_tokens else None
        basic = basic_credentials(headers)
        if basic is not None:
            user, secret = basic
            if user == f"{self.email}/token" and secrets.compare_digest(secret, self.api_token):
                return "admin"
        return None

    def _token(self, headers: Mapping[str, str], body: bytes) -> Reply:
        kind = headers.get("Content-Type") or ""
        try:
            if "json" in kind:
                form = {k: str(v) for k, v in json.loads(body or b"{}").items()}
            else:
                form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        except ValueError:
            return Reply(400, json_body({"error": "invalid_request",
                                      "error_description": "The request body is malformed."}))  # fmt: skip
        if form.get("grant_type") != "client_credentials":
            return Reply(400, json_body({"error": "unsupported_grant_type", "error_description":
                          "The authorization grant type is not supported."}))  # fmt: skip
        if form.get("client_id") != self.client_id or not secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        ):
            return Reply(401, json_body({"error": "invalid_client", "error_description":
                          "Client authentication failed due to unknown client, no client "
                          "authentication included, or unsupported authentication method."}))  # fmt: skip
        token = self.issue_access_token()
        return Reply(200, json_body({"access_token": token, "token_type": "bearer",
                                  "scope": form.get("scope", "read"), "expires_in": 172800}))  # fmt: skip

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str]
    ) -> Reply:
        caller = self._caller(headers)
        if caller is None:
            return self._unauthorized(headers)
        if method != "GET":
            return _error(405, "MethodNotAllowed")
        if path == "/api/v2/users/me.json":
            if caller == "anonymous":  # Zendesk answers users/me without credentials, too
                return Reply(200, json_body({"user": {"id": None, "name": "Anonymous user",
                                                   "role": "end-user"}}))  # fmt: skip
            return Reply(200, json_body({"user": {"id": 1, "email": self.email, "role": "admin"}}))
        export = _EXPORTS.get(path)
        if export is None:
            return _error(404, "InvalidEndpoint", "Not found")
        if caller == "anonymous":
            return _error(401, "Couldn't authenticate you")
        name, cursor_based = export
        try:
            per_page = int(query.get("per_page", MAX_PER_PAGE))
        except ValueError:
            return _error(400, "InvalidValue", "per_page must be an integer")
        if not 1 <= per_page <= MAX_PER_PAGE:
            return _error(400, "InvalidValue", f"per_page must be between 1 and {MAX_PER_PAGE}")
        if cursor_based and "cursor" in query:
            try:
                ts, _, last_id = base64.urlsafe_b64decode(query["cursor"]).decode().partition("|")
                position = (int(ts), int(last_id))
            except ValueError:
                return _error(400, "InvalidCursor", "The cursor is not valid")
            return self._cursor_page(name, path, position, per_page)
        try:
            start = int(query["start_time"])
        except (KeyError, ValueError):
            return _error(400, "InvalidValue", "start_time is required: a Unix epoch time")
        if start > self.now() - MIN_AGE_SECONDS:
            return _error(400, "InvalidValue",
                          "Too recent start_time. Use a start_time older than 1 minute.")  # fmt: skip
        if cursor_based:
            return self._cursor_page(name, path, (start, -1), per_page)
        return self._time_page(name, path, start, per_page)

    def _keyed(self, name: str) -> list[tuple[int, int, dict[str, Any]]]:
        return [
            (int(datetime.strptime(r["updated_at"], _TIME_FORMAT).replace(tzinfo=UTC).timestamp()),
             r["id"], r)
            for r in self._data[name]
        ]  # fmt: skip

    def _cursor_page(self, name: str, path: str, position: tuple[int, int], per_page: int) -> Reply:
        """Records after `position` (update second, id): a start_time is (second, -1)."""
        rows = [k for k in self._keyed(name) if (k[0], k[1]) > position]
        page, rest = rows[:per_page], rows[per_page:]
        last = (page[-1][0], page[-1][1]) if page else position
        cursor = base64.urlsafe_b64encode(f"{last[0]}|{last[1]}".encode()).decode()
        after_url = f"{self.url}{path}?{urlencode({'cursor': cursor})}"
        return Reply(200, json_body({
            name: [r for _, _, r in page], "after_cursor": cursor, "after_url": after_url,
            "before_cursor": None, "before_url": None, "end_of_stream": not rest,
        }))  # fmt: skip

    def _time_page(self, name: str, path: str, start: int, per_page: int) -> Reply:
        """Time-based: records updated at or after `start`, up to per_page (more when the
        page's last second continues); the next page starts at the last record's second, so
        the records of that second come again (Zendesk's documented duplicates)."""
        rows = [k for k in self._keyed(name) if k[0] >= start]
        page = rows[:per_page]
        if page and len(rows) > per_page and page[0][0] == page[-1][0]:
            page = [k for k in rows if k[0] == page[-1][0]]  # one second fills the page
        end_of_stream = len(rows) <= len(page)
        end_time = page[-1][0] if page else start
        if not end_of_stream and end_time == page[0][0]:
            end_time += 1  # the whole page was one second: move past it
        base = f"{self.url}{path}"
        next_page = f"{base}?{urlencode({'per_page': per_page, 'start_time': end_time})}"
        return Reply(200, json_body({
            name: [r for _, _, r in page], "count": len(page), "end_time": end_time,
            "next_page": None if end_of_stream else next_page, "end_of_stream": end_of_stream,
        }))  # fmt: skip

    def internal_error(self) -> Reply:
        return _error(500, "InternalError", "An unexpected error occurred")
