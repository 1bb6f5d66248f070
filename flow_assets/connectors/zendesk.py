"""Zendesk Support source over its incremental export API: tickets and users through the
cursor-based exports, organizations through the time-based one (the only one it has).

What the API decides here (developer.zendesk.com, "Using the Incremental Export API"):
- An export returns the records created or changed at or after `start_time` (Unix seconds),
  never those of the last minute, and `start_time` must be at least a minute old. A cursor more
  recent than that is moved back (records at or before the cursor are dropped here anyway).
- `start_time` has second grain, and the ticket export compares it with the ticket's
  `generated_timestamp`, not `updated_at`; so records with a cursor value at or before
  `cursor_after` (or outside `cursor_from`/`cursor_before`) are filtered here, after the read.
- Cursor exports page with `after_cursor` until `end_of_stream`; the organization export pages
  with `next_page`/`end_time` until `end_of_stream`, and may repeat the records of the boundary
  second on the next page: those repeats are dropped here.
- The exports take no filters, so nothing is pushed down (`can_push_down` is always False).
- Deleted tickets stay in the ticket export with `status: deleted`; they are dropped unless the
  request asks for deleted records (`include_deleted`).
- Nested objects (`via`, `custom_fields`, `satisfaction_rating`, `user_fields`, `photo`...) are
  not described and not read: a flow names scalar fields, and tags / id lists (arrays of
  scalars) are read as typed Polars lists.

Auth: an API token (`{email}/token:{api_token}` basic auth, no expiry: a 401 is final), a
static OAuth access token (a 401 is final too: it cannot be renewed without a client), or an
OAuth client (`client_id`/`client_secret`, the client credentials grant on /oauth/tokens),
whose expired access tokens are replaced on the first 401.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import dagster as dg
import polars as pl
import requests
from pydantic import Field

from flow_assets.connectors.base import FieldInfo, ObjectSchema, ReadRequest
from flow_assets.connectors.errors import (
    AuthError,
    ConnectorError,
    MalformedResponse,
    UnknownObject,
)
from flow_assets.connectors.http import Answer, HttpClient, RetryPolicy, parse_json, status_of
from flow_assets.connectors.malformed import explain_page
from flow_assets.connectors.oauth import OAuth2
from flow_assets.connectors.paging import paginate
from flow_assets.connectors.static_auth import StaticAuth
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import FilterSpec

MAX_PER_PAGE = 1000  # the exports' largest page
MIN_AGE_SECONDS = 61  # start_time must be at least a minute in the past
_TIME = pl.Datetime("us", "UTC")
_ID = pl.Int64()
_TEXT = pl.String()
_FLAG = pl.Boolean()
_TAGS = pl.List(pl.String())
_IDS = pl.List(pl.Int64())

# The documented JSON formats of the exported records (scalars and arrays of scalars).
FIELDS: dict[str, dict[str, tuple[str, pl.DataType]]] = {
    "tickets": {
        "id": ("integer", _ID), "url": ("string", _TEXT), "external_id": ("string", _TEXT),
        "type": ("string", _TEXT), "subject": ("string", _TEXT), "raw_subject": ("string", _TEXT),
        "description": ("string", _TEXT), "priority": ("string", _TEXT),
        "status": ("string", _TEXT), "recipient": ("string", _TEXT),
        "requester_id": ("integer", _ID), "submitter_id": ("integer", _ID),
        "assignee_id": ("integer", _ID), "organization_id": ("integer", _ID),
        "group_id": ("integer", _ID), "problem_id": ("integer", _ID),
        "has_incidents": ("boolean", _FLAG), "is_public": ("boolean", _FLAG),
        "tags": ("array", _TAGS), "collaborator_ids": ("array", _IDS),
        "follower_ids": ("array", _IDS), "due_at": ("date-time", _TIME),
        "created_at": ("date-time", _TIME), "updated_at": ("date-time", _TIME),
        "generated_timestamp": ("integer", _ID),
    },
    "users": {
        "id": ("integer", _ID), "url": ("string", _TEXT), "name": ("string", _TEXT),
        "email": ("string", _TEXT), "phone": ("string", _TEXT), "role": ("string", _TEXT),
        "organization_id": ("integer", _ID), "external_id": ("string", _TEXT),
        "time_zone": ("string", _TEXT), "locale": ("string", _TEXT),
        "active": ("boolean", _FLAG), "verified": ("boolean", _FLAG),
        "suspended": ("boolean", _FLAG), "tags": ("array", _TAGS),
        "last_login_at": ("date-time", _TIME), "created_at": ("date-time", _TIME),
        "updated_at": ("date-time", _TIME),
    },
    "organizations": {
        "id": ("integer", _ID), "url": ("string", _TEXT), "name": ("string", _TEXT),
        "external_id": ("string", _TEXT), "group_id": ("integer", _ID),
        "details": ("string", _TEXT), "notes": ("string", _TEXT),
        "shared_tickets": ("boolean", _FLAG), "shared_comments": ("boolean", _FLAG),
        "domain_names": ("array", _TAGS), "tags": ("array", _TAGS),
        "created_at": ("date-time", _TIME), "updated_at": ("date-time", _TIME),
        "deleted_at": ("date-time", _TIME),
    },
}  # fmt: skip


@dataclass(frozen=True)
class Export:
    path: str
    cursor_based: bool  # after_cursor paging; else time-based (next_page, end_time)


EXPORTS = {
    "tickets": Export("/api/v2/incremental/tickets/cursor.json", cursor_based=True),
    "users": Export("/api/v2/incremental/users/cursor.json", cursor_based=True),
    "organizations": Export("/api/v2/incremental/organizations.json", cursor_based=False),
}
# start_time is compared with the update time; created_at is never later, so it may use it too.
_START_TIME_CURSORS = ("updated_at", "created_at")


class ZendeskConnection(dg.ConfigurableResource):
    """A Zendesk Support account reached through its REST API (API token or OAuth)."""

    subdomain: str | None = Field(
        None, description="The account's subdomain: {subdomain}.zendesk.com."
    )
    base_url: str | None = Field(
        None, description="Instead of subdomain: the API's root URL (a sandbox)."
    )
    email: str | None = Field(None, description="The agent's email, for API token auth.")
    api_token: str | None = Field(None, description="An API token (an EnvVar), with email.")
    oauth_token: str | None = Field(None, description="An OAuth access token (an EnvVar).")
    client_id: str | None = Field(
        None, description="An OAuth client's identifier, for the client credentials grant."
    )
    client_secret: str | None = Field(None, description="The OAuth client's secret (an EnvVar).")
    scope: str = Field("read", description="The scope asked for with the client credentials grant.")
    connection_name: str = Field("zendesk", description="Named in error messages.")
    max_attempts: int = Field(6, ge=1, description="Attempts per call on 429, 5xx and resets.")

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("api_token", "oauth_token", "client_secret")

    def root(self) -> str:
        if bool(self.subdomain) == bool(self.base_url):
            raise ConnectorError(
                f"connection '{self.connection_name}': give either subdomain or base_url"
            )
        return (
            self.base_url.rstrip("/") if self.base_url else f"https://{self.subdomain}.zendesk.com"
        )

    def open(self, max_attempts: int | None = None) -> ZendeskClient:
        root = self.root()
        retry = RetryPolicy(max_attempts=max_attempts or self.max_attempts)
        session = requests.Session()
        auth: Any
        if self.client_id or self.client_secret:
            if not (self.client_id and self.client_secret):
                raise self._needs("client_id and client_secret go together")
            grant = {"grant_type": "client_credentials", "client_id": self.client_id,
                     "client_secret": self.client_secret, "scope": self.scope}  # fmt: skip
            auth = OAuth2(root + "/oauth/tokens", grant, self.connection_name, retry, session)
        elif self.oauth_token:
            auth = StaticAuth.bearer(self.oauth_token)
        elif self.api_token:
            if not self.email:
                raise self._needs("api_token needs email")
            auth = StaticAuth.basic(f"{self.email}/token", self.api_token)
        else:
            raise self._needs("set api_token (with email), oauth_token, or client_id/client_secret")
        return ZendeskClient(self.connection_name, root, auth, retry, session)

    def _needs(self, what: str) -> ConnectorError:
        return ConnectorError(f"connection '{self.connection_name}': {what}")


def describe_error(answer: Answer) -> str:
    """Zendesk's error bodies: {"error": "...", "description": "..."} (an "error" may be an
    object with title/message), OAuth's {"error", "error_description"}, or plain text."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return answer.text[:200]
    if isinstance(body, dict) and "error" in body:
        error = body["error"]
        if isinstance(error, dict):
            error = f"{error.get('title', '')} {error.get('message', '')}".strip()
        detail = body.get("description") or body.get("error_description") or ""
        return f"{error}: {detail}" if detail else str(error)
    return answer.text[:200]


class ZendeskClient:
    """An open session to one Zendesk account: its three exports as typed Polars pages."""

    def __init__(
        self, connection: str, root: str, auth: Any, retry: RetryPolicy, session: requests.Session
    ):
        self.connection = connection
        self.root = root
        self.auth = auth
        self.http = HttpClient(
            base_url=root, auth=auth, retry=retry, describe_error=describe_error, session=session
        )
        self.now = time.time  # the clock deciding how recent a start_time may be

    def _get(self, path_or_url: str, parse=parse_json, **kwargs: Any) -> Any:
        try:
            return self.http.request("GET", path_or_url, parse=parse, **kwargs)
        except AuthError:
            raise
        except ConnectorError as exc:
            if status_of(exc) == 401:
                raise AuthError(
                    f"connection '{self.connection}': Zendesk refused the credentials ({exc}); "
                    "check the email and token (environment variables), or renew the token"
                ) from None
            if status_of(exc) == 403:
                raise AuthError(
                    f"connection '{self.connection}': not allowed ({exc}); the incremental "
                    "exports need an admin's credentials (and the OAuth scope 'read')"
                ) from None
            raise

    def check(self) -> None:
        body = self._get("/api/v2/users/me.json")
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, dict):
            raise MalformedResponse(f"connection '{self.connection}': users/me has no 'user'")
        # Without credentials Zendesk answers users/me with an anonymous user, not a 401.
        if user.get("id") is None:
            raise AuthError(
                f"connection '{self.connection}': Zendesk did not recognise the credentials"
            )
        if user.get("role") != "admin":
            raise AuthError(
                f"connection '{self.connection}': the user is a {user.get('role')}; the "
                "incremental exports need an admin"
            )

    def list_objects(self) -> list[str]:
        return sorted(EXPORTS)

    def describe(self, object_name: str) -> ObjectSchema:
        fields = FIELDS.get(object_name)
        if fields is None:
            raise UnknownObject(
                f"'{object_name}' is not an object of connection '{self.connection}'"
                f"{did_you_mean(object_name, FIELDS)}; Zendesk objects: {', '.join(sorted(FIELDS))}"
            )
        return ObjectSchema(
            object_name,
            {
                name: FieldInfo(name, kind, dtype, nillable=name != "id", filterable=False)
                for name, (kind, dtype) in fields.items()
            },
            # Deleted tickets stay in the export with status "deleted".
            deleted_when=("status", "deleted") if object_name == "tickets" else None,
        )

    def can_push_down(self, spec: FilterSpec, info: FieldInfo) -> bool:
        return False  # the export endpoints take no filters: every filter runs locally

    def start_time(self, request: ReadRequest) -> int:
        """The export's start_time: the cursor's second (the API is second-grained and
        inclusive), moved back to a minute ago if more recent (the API refuses those)."""
        bounds = [t for t in (request.cursor_after, request.cursor_from) if t is not None]
        if not bounds or request.cursor_field not in _START_TIME_CURSORS:
            return 0
        start = int(max(bounds).timestamp())
        return max(0, min(start, int(self.now()) - MIN_AGE_SECONDS))

    def read(self, request: ReadRequest) -> Iterator[pl.DataFrame]:
        """Typed pages of the export, one request at a time, filtered to the request's window."""
        schema = self.describe(request.object)
        schema.require(request.fields)
        if request.cursor_field is not None:
            info = schema.require([request.cursor_field], where="source.incremental.cursor_field")
            if info[0].dtype != _TIME:
                raise ConnectorError(
                    f"{request.object}.{request.cursor_field} is not a date-time; an incremental "
                    "cursor on Zendesk is updated_at (or another date-time field)"
                )
        export = EXPORTS[request.object]
        needed = list(dict.fromkeys([*request.fields, "id", "updated_at"]
                                    + (["status"] if request.object == "tickets" else [])))  # fmt: skip
        parser = PageParser(request.object, schema, needed)
        per_page = min(request.page_size or MAX_PER_PAGE, MAX_PER_PAGE)
        first = {"start_time": self.start_time(request), "per_page": per_page}
        if export.cursor_based:
            pages = paginate(self._fetcher(export, parser), (1, first), _next_cursor)
        else:
            pages = paginate(self._fetcher(export, parser), (1, first), _next_page_url)
        window = request.cursor_window()
        boundary = pl.DataFrame(schema={"id": _ID, "updated_at": _TIME})
        for page in pages:
            frame = page.frame
            if not export.cursor_based:  # time-based paging repeats the boundary second
                frame = frame.join(boundary, on=["id", "updated_at"], how="anti")
                if page.end_time is not None:
                    edge = datetime.fromtimestamp(page.end_time, UTC)
                    boundary = page.frame.filter(pl.col("updated_at") >= edge).select(
                        "id", "updated_at"
                    )
            if request.object == "tickets" and not request.include_deleted:
                frame = frame.filter(pl.col("status").ne_missing("deleted"))
            if window is not None:
                frame = frame.filter(window)
            yield frame.select(request.fields)

    def _fetcher(self, export: Export, parser: PageParser):
        def fetch(state: tuple[int, Any]) -> Page:
            number, where = state
            if isinstance(where, Mapping):
                return self._get(export.path, parse=lambda b: parser.parse(b, number), params=where)
            return self._get(where, parse=lambda b: parser.parse(b, number))

        return fetch


@dataclass(frozen=True)
class Page:
    number: int
    frame: pl.DataFrame
    end_of_stream: bool
    after_cursor: str | None = None
    next_page: str | None = None
    end_time: int | None = None


def _next_cursor(state: tuple[int, Any], page: Page) -> tuple[int, Any] | None:
    if page.end_of_stream:
        return None
    if not page.after_cursor:
        raise MalformedResponse(f"page {page.number} is not the last but has no after_cursor")
    return page.number + 1, {"cursor": page.after_cursor, "per_page": state[1]["per_page"]}


def _next_page_url(state: tuple[int, Any], page: Page) -> tuple[int, Any] | None:
    if page.end_of_stream:
        return None
    if not page.next_page:
        raise MalformedResponse(f"page {page.number} is not the last but has no next_page")
    return page.number + 1, page.next_page


class PageParser:
    """One export answer's bytes -> a typed frame of the needed fields, read by Polars."""

    def __init__(self, object_name: str, schema: ObjectSchema, names: list[str]):
        self.object_name = object_name
        self.infos = [schema.fields[n] for n in names]
        # Date-times are read as text and parsed in one expression: a bad one is then found.
        self.wire = pl.Schema({i.name: _TEXT if i.dtype == _TIME else i.dtype for i in self.infos})
        self.temporal = [i.name for i in self.infos if i.dtype == _TIME]

    def parse(self, body: bytes, number: int) -> Page:
        where = f"page {number} of {self.object_name}"
        envelope_schema = {
            self.object_name: pl.List(pl.Struct(self.wire)),
            "end_of_stream": pl.Boolean,
            "after_cursor": pl.String,
            "next_page": pl.String,
            "end_time": pl.Int64,
        }
        try:
            envelope = pl.read_json(io.BytesIO(body), schema=envelope_schema)
        except pl.exceptions.PolarsError:
            raise MalformedResponse(explain_page(body, where, self.object_name, self.infos,
                                                 answer="an export answer")) from None  # fmt: skip
        if envelope.height != 1 or envelope["end_of_stream"][0] is None:
            raise MalformedResponse(f"{where} has no 'end_of_stream' flag")
        records = envelope[self.object_name][0]
        if records is None:
            raise MalformedResponse(f"{where} has no '{self.object_name}' list")
        frame = records.struct.unnest() if len(records) else pl.DataFrame(schema=self.wire)
        typed = frame.with_columns(
            pl.col(n).str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="us", strict=False)
            .dt.replace_time_zone("UTC")
            for n in self.temporal
        )  # fmt: skip
        for name in self.temporal:
            bad = typed.filter(pl.col(name).is_null() & frame[name].is_not_null())
            if bad.height:
                raise MalformedResponse(
                    f"{where}: record {bad['id'][0]}: field {name} is not a Zendesk date-time"
                )
        if typed["id"].null_count():
            raise MalformedResponse(f"{where}: a record has no id")
        return Page(
            number,
            typed,
            bool(envelope["end_of_stream"][0]),
            envelope["after_cursor"][0],
            envelope["next_page"][0],
            envelope["end_time"][0],
        )
