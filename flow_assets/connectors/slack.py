"""Slack source over the Web API: channels (conversations.list), their messages
(conversations.history) and users (users.list), read with a bot token.

What the API decides here (docs.slack.dev: "Pagination", "Rate limits", conversations.history,
"Using token rotation"):
- Most errors are an HTTP 200 whose body is `{"ok": false, "error": "..."}`: every answer's `ok`
  is checked before its data is read. Auth errors (invalid_auth, not_authed, token_revoked,
  missing_scope...) are final; internal_error / fatal_error / service_unavailable / ratelimited
  are retried. Rate limits are mostly HTTP 429 with Retry-After (seconds), honoured by HttpClient.
- The list methods page with `cursor` + `limit`; an empty or missing
  `response_metadata.next_cursor` ends the paging (a short page does not).
  conversations.history also says `has_more`.
- A message's `ts` ("seconds.micro", six digits) is its id within the channel and its time:
  `posted_at` is that time, exact to the microsecond, and the incremental cursor of `messages`.
  `oldest`/`latest` are exclusive unless `inclusive` is set (which would apply to both ends), so
  a cursor_after is sent as `oldest` exactly, a cursor_from as `oldest` one microsecond earlier,
  a cursor_before as `latest`: the API returns exactly the window (it is also filtered here).
- Messages are those of the channels named in the connection's `channels`, or else of every
  channel conversations.list returns that the bot is a member of (a bot token reads only those;
  the others answer not_in_channel). Thread replies (conversations.replies) are not read.
- conversations.list and users.list take no time filter: an incremental read of `channels`
  (on `created` or `updated`) or `users` (on `updated`) reads everything and filters here.
- No filter is pushed down (`can_push_down` is always False). Nested objects (`topic`,
  `purpose`, `profile`, `blocks`, `attachments`...) are not read.

Auth: a bot token (`xoxb-`, no expiry: a refused one is final), or token rotation: `client_id`,
`client_secret` and a `refresh_token`, exchanged on oauth.v2.access (grant_type=refresh_token)
for a 12-hour access token whenever the API answers `token_expired`. Each exchange revokes the
refresh token it used and returns a new one, so the new pair is written to `token_store` (a
file) for the next run; without a store, only the first run after configuring a refresh token
can rotate.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
from flow_assets.connectors.http import Answer, HttpClient, RetryPolicy, TransientError
from flow_assets.connectors.malformed import explain_page, json_fits
from flow_assets.connectors.oauth import OAuth2
from flow_assets.connectors.oauth_bootstrap import AuthorizationCodeApp
from flow_assets.connectors.paging import paginate
from flow_assets.connectors.static_auth import StaticAuth
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import FilterSpec

DEFAULT_LIMIT = 200  # Slack recommends 100-200 per call
MAX_LIMIT = {"channels": 1000, "users": 1000, "messages": 999}
_TIME = pl.Datetime("us", "UTC")
_TEXT = pl.String()
_INT = pl.Int64()
_FLAG = pl.Boolean()
# Wire kinds: how a field is on the wire, and so how it is typed.
_SECONDS, _MILLIS, _TS = "unix-seconds", "unix-milliseconds", "ts"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

FIELDS: dict[str, dict[str, tuple[str, pl.DataType]]] = {
    "channels": {
        "id": ("string", _TEXT), "name": ("string", _TEXT), "name_normalized": ("string", _TEXT),
        "is_channel": ("boolean", _FLAG), "is_group": ("boolean", _FLAG),
        "is_im": ("boolean", _FLAG), "is_mpim": ("boolean", _FLAG),
        "is_private": ("boolean", _FLAG), "is_archived": ("boolean", _FLAG),
        "is_general": ("boolean", _FLAG), "is_shared": ("boolean", _FLAG),
        "is_ext_shared": ("boolean", _FLAG), "is_member": ("boolean", _FLAG),
        "creator": ("string", _TEXT), "num_members": ("integer", _INT),
        "created": (_SECONDS, _TIME), "updated": (_MILLIS, _TIME),
    },
    "messages": {
        "channel": ("channel id", _TEXT), "ts": ("string", _TEXT), "posted_at": (_TS, _TIME),
        "type": ("string", _TEXT), "subtype": ("string", _TEXT), "user": ("string", _TEXT),
        "bot_id": ("string", _TEXT), "text": ("string", _TEXT),
        "thread_ts": ("string", _TEXT), "reply_count": ("integer", _INT),
        "reply_users_count": ("integer", _INT), "latest_reply": ("string", _TEXT),
    },
    "users": {
        "id": ("string", _TEXT), "team_id": ("string", _TEXT), "name": ("string", _TEXT),
        "real_name": ("string", _TEXT), "deleted": ("boolean", _FLAG),
        "color": ("string", _TEXT), "tz": ("string", _TEXT), "tz_label": ("string", _TEXT),
        "tz_offset": ("integer", _INT), "is_admin": ("boolean", _FLAG),
        "is_owner": ("boolean", _FLAG), "is_primary_owner": ("boolean", _FLAG),
        "is_restricted": ("boolean", _FLAG), "is_ultra_restricted": ("boolean", _FLAG),
        "is_bot": ("boolean", _FLAG), "is_app_user": ("boolean", _FLAG),
        "updated": (_SECONDS, _TIME),
    },
}  # fmt: skip
# Each object's method, the list it answers, and its key.
METHODS = {
    "channels": ("conversations.list", "channels", "id"),
    "messages": ("conversations.history", "messages", "ts"),
    "users": ("users.list", "members", "id"),
}
AUTH_ERRORS = frozenset({
    "invalid_auth", "not_authed", "token_expired", "token_revoked", "account_inactive",
    "missing_scope", "not_allowed_token_type", "no_permission", "ekm_access_denied",
    "access_denied", "team_access_not_granted",
})  # fmt: skip
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }  # fmt: skip
)


def ts_of(moment: datetime) -> str:
    """A datetime as a Slack ts ("seconds.micro"), exact to the microsecond."""
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    seconds, micro = divmod(micros, 1_000_000)
    return f"{seconds}.{micro:06d}"


def ts_to_time(column: str = "ts") -> pl.Expr:
    """A ts column as Datetime(us, UTC), by integer arithmetic (no float rounding); a value that
    is not "seconds.micro" with six digits of micro (as Slack writes every ts) gives null."""
    parts = pl.col(column).str.extract_groups(r"^(\d+)\.(\d{6})$")
    micros = parts.struct["1"].cast(pl.Int64) * 1_000_000 + parts.struct["2"].cast(pl.Int64)
    return pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC")


class SlackConnection(dg.ConfigurableResource):
    """A Slack workspace reached through the Web API as a bot (a bot token, or token rotation)."""

    base_url: str = Field(
        "https://slack.com/api", description="The Web API's root URL (a sandbox's /api)."
    )
    token: str | None = Field(
        None, description="A bot token (an EnvVar): xoxb-, or a rotating xoxe.xoxb- token."
    )
    client_id: str | None = Field(None, description="The app's client id, for token rotation.")
    client_secret: str | None = Field(None, description="The app's client secret (an EnvVar).")
    refresh_token: str | None = Field(
        None, description="A refresh token (an EnvVar, xoxe-): turns on token rotation."
    )
    token_store: str | None = Field(
        None,
        description="With rotation: a JSON file keeping the newest access and refresh tokens "
        "(each exchange revokes the refresh token used), created with mode 600.",
    )
    channels: list[str] | None = Field(
        None,
        description="Channel ids whose messages `messages` reads; default: every channel "
        "conversations.list returns that the bot is a member of.",
    )
    channel_types: str = Field(
        "public_channel",
        description="conversations.list `types`: public_channel, private_channel, mpim, im.",
    )
    connection_name: str = Field("slack", description="Named in error messages.")
    max_attempts: int = Field(6, ge=1, description="Attempts per call on 429, 5xx and resets.")

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("token", "client_secret", "refresh_token")
    # `flowbridge oauth`: installing the app (slack.com/oauth/v2/authorize, beside the Web API's
    # /api root; oauth.v2.access). Bot scopes, comma-separated, for what is read of each
    # channel type; only an app with token rotation turned on gets a refresh token.
    OAUTH_SCOPES: ClassVar[dict[str, tuple[str, ...]]] = {
        "public_channel": ("channels:read", "channels:history"),
        "private_channel": ("groups:read", "groups:history"),
        "mpim": ("mpim:read", "mpim:history"),
        "im": ("im:read", "im:history"),
    }

    def authorization_code_app(self) -> AuthorizationCodeApp:
        if not (self.client_id and self.client_secret):
            raise self._needs("installing the app needs client_id and client_secret")
        api = self.base_url.rstrip("/")
        kinds = [k.strip() for k in self.channel_types.split(",")]
        scopes = [s for k in kinds for s in self.OAUTH_SCOPES.get(k, ())] + ["users:read"]
        return AuthorizationCodeApp(
            authorize_url=api.removesuffix("/api") + "/oauth/v2/authorize",
            token_url=api + "/oauth.v2.access", client_id=self.client_id,
            client_secret=self.client_secret, scopes=tuple(scopes), scope_separator=",",
            pkce=True, redirect_host="localhost", check_answer=self._installed,
            after_store=self._keep_installed,
            no_refresh_token_hint="turn on token rotation (OAuth & Permissions) and install "
            "again; without it Slack issues a bot token that never expires: set token: instead",
        )  # fmt: skip

    def _installed(self, body: dict[str, Any]) -> None:
        if body.get("ok") is not True:
            raise ConnectorError(f"oauth.v2.access answered {body.get('error', 'ok: false')}")

    def _keep_installed(self, body: dict[str, Any]) -> str | None:
        """A token_store holding an older pair would be used before the new refresh token:
        it gets the new pair."""
        if not self.token_store:
            return None
        expires_at = time.time() + float(body.get("expires_in") or 0)
        TokenStore(Path(self.token_store)).save({"access_token": body.get("access_token"),
            "expires_at": expires_at, "refresh_token": body["refresh_token"]})  # fmt: skip
        return f"updated token_store {self.token_store} with the new tokens"

    def open(self, max_attempts: int | None = None) -> SlackClient:
        root = self.base_url.rstrip("/")
        retry = RetryPolicy(max_attempts=max_attempts or self.max_attempts)
        session = requests.Session()
        auth: Any
        rotation = (self.client_id, self.client_secret, self.refresh_token)
        if any(rotation):
            if not all(rotation):
                raise self._needs("token rotation needs client_id, client_secret and refresh_token")
            store = TokenStore(Path(self.token_store)) if self.token_store else None
            saved = store.load() if store else {}
            grant = {"grant_type": "refresh_token", "client_id": self.client_id,
                     "client_secret": self.client_secret,
                     "refresh_token": saved.get("refresh_token") or self.refresh_token}  # fmt: skip
            auth = SlackRotation(root + "/oauth.v2.access", grant, self.connection_name, retry,
                                 session, store=store)  # fmt: skip
            if saved.get("access_token") and saved.get("expires_at", 0) > time.time() + 60:
                auth.access_token = saved["access_token"]
            elif self.token:
                auth.access_token = self.token
        elif self.token:
            auth = StaticAuth.bearer(self.token)
        else:
            raise self._needs("set token (a bot token), or client_id, client_secret and "
                              "refresh_token for token rotation")  # fmt: skip
        return SlackClient(self.connection_name, root, auth, retry, session,
                           self.channels, self.channel_types)  # fmt: skip

    def _needs(self, what: str) -> ConnectorError:
        return ConnectorError(f"connection '{self.connection_name}': {what}")


@dataclass(frozen=True)
class TokenStore:
    """The newest rotated tokens, in a file only the owner can read."""

    path: Path

    def load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise ConnectorError(
                f"token_store {self.path} is not valid JSON; delete it and configure a fresh "
                "refresh_token"
            ) from None

    def save(self, tokens: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(self.path.suffix + ".partial")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(tokens, out)
        os.replace(partial, self.path)


@dataclass(repr=False)
class SlackRotation(OAuth2):
    """OAuth2's bearer token, renewed the Slack way: an expired token is a 200 with
    `token_expired`, and oauth.v2.access answers ok:false (not a 4xx) when it refuses."""

    store: TokenStore | None = field(default=None, repr=False)

    def is_expired(self, answer: Answer) -> bool:
        return answer.status_code == 200 and slack_error(answer.body) == "token_expired"

    def refresh(self) -> None:
        with self._lock:
            client = HttpClient(self.token_url, retry=self.retry, session=self.session)
            body = client.request("POST", self.token_url, parse=self._parse, data=self.grant)
            self.access_token = body["access_token"]
            self.grant = {**self.grant, "refresh_token": body["refresh_token"]}
            if self.store is not None:
                expires_at = time.time() + float(body.get("expires_in") or 0)
                self.store.save({"access_token": body["access_token"], "expires_at": expires_at,
                                 "refresh_token": body["refresh_token"]})  # fmt: skip

    def _parse(self, raw: bytes) -> dict[str, Any]:
        body = _json(raw, "oauth.v2.access")
        if body.get("ok") is not True:
            error = body.get("error", "no error code")
            if error in TRANSIENT_ERRORS:
                raise TransientError(f"oauth.v2.access answered {error}")
            hint = "check client_id and client_secret (environment variables)"
            if error in ("invalid_refresh_token", "invalid_grant"):
                hint = ("the refresh token was refused (each is single-use): set token_store so "
                        "rotated tokens are kept, and configure a new refresh token")  # fmt: skip
            raise AuthError(f"connection '{self.connection}': token rotation failed: {error}; "
                            f"{hint}")  # fmt: skip
        if not body.get("access_token") or not body.get("refresh_token"):
            raise AuthError(f"connection '{self.connection}': oauth.v2.access answered without "
                            "an access_token and refresh_token")  # fmt: skip
        return body


def slack_error(body: bytes) -> str | None:
    """The `error` of an ok:false answer, or None."""
    if b'"ok"' not in body:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("ok") is False:
        return str(doc.get("error", "no error code"))
    return None


def describe_error(answer: Answer) -> str:
    return slack_error(answer.body) or answer.text[:200]


def _json(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise MalformedResponse(
            f"{where}: answer is not valid JSON ({exc.msg} at character {exc.pos} of {len(raw)})"
        ) from None


@dataclass(frozen=True)
class Page:
    number: int
    frame: pl.DataFrame
    next_cursor: str | None
    has_more: bool | None


class SlackClient:
    """An open session to one Slack workspace: channels, messages and users as typed pages."""

    def __init__(
        self,
        connection: str,
        root: str,
        auth: Any,
        retry: RetryPolicy,
        session: requests.Session,
        channels: list[str] | None = None,
        channel_types: str = "public_channel",
    ):
        self.connection = connection
        self.root = root
        self.auth = auth
        self.channels = channels
        self.channel_types = channel_types
        self.http = HttpClient(
            base_url=root, auth=auth, retry=retry, describe_error=describe_error, session=session
        )

    def call(self, method: str, params: dict[str, Any], parse=None) -> Any:
        """One Web API call (GET, arguments as a query); ok:false raises, never returns."""
        return self.http.request(
            "GET", method, parse=parse or (lambda raw: self._ok(raw, method)), params=params
        )

    def _ok(self, raw: bytes, method: str) -> dict[str, Any]:
        body = _json(raw, method)
        if not isinstance(body, dict) or "ok" not in body:
            raise MalformedResponse(f"{method}: the answer has no 'ok'")
        if body["ok"] is not True:
            raise self._refusal(method, body)
        return body

    def _refusal(self, method: str, body: dict[str, Any]) -> ConnectorError:
        error = str(body.get("error", "no error code"))
        where = f"connection '{self.connection}': {method} answered ok:false, {error}"
        if error in TRANSIENT_ERRORS:
            return TransientError(where)
        if error in AUTH_ERRORS:
            hint = "check the bot token (environment variable) or reinstall the app"
            if error == "missing_scope":
                hint = f"the app needs the scope {body.get('needed', '?')}; add it and reinstall"
            elif error == "token_expired":
                hint = ("the token rotates: configure client_id, client_secret and "
                        "refresh_token so it can be renewed")  # fmt: skip
            return AuthError(f"{where}; {hint}")
        if error == "not_in_channel":
            return ConnectorError(f"{where}; invite the app to the channel, or leave it out of "
                                  "the connection's channels")  # fmt: skip
        return ConnectorError(where)

    def check(self) -> None:
        """auth.test; with rotation, one exchange first: a stored access token may still work
        while the app credentials a later run will need are wrong."""
        if isinstance(self.auth, SlackRotation):
            self.auth.refresh()
        self.call("auth.test", {})

    def list_objects(self) -> list[str]:
        return sorted(FIELDS)

    def describe(self, object_name: str) -> ObjectSchema:
        fields = FIELDS.get(object_name)
        if fields is None:
            raise UnknownObject(
                f"'{object_name}' is not an object of connection '{self.connection}'"
                f"{did_you_mean(object_name, FIELDS)}; Slack objects: {', '.join(sorted(FIELDS))}"
            )
        key = METHODS[object_name][2]
        return ObjectSchema(
            object_name,
            {
                name: FieldInfo(
                    name, kind, dtype, nillable=name not in (key, "channel"), filterable=False
                )  # fmt: skip
                for name, (kind, dtype) in fields.items()
            },
        )

    def can_push_down(self, spec: FilterSpec, info: FieldInfo) -> bool:
        return False  # the list and history methods take no filters: every filter runs here

    def read(self, request: ReadRequest) -> Iterator[pl.DataFrame]:
        """Typed pages, one call at a time, filtered to the request's cursor window."""
        schema = self.describe(request.object)
        schema.require(request.fields)
        if request.cursor_field is not None:
            info = schema.require([request.cursor_field], where="source.incremental.cursor_field")
            if info[0].dtype != _TIME:
                raise ConnectorError(
                    f"{request.object}.{request.cursor_field} is not a date-time; an incremental "
                    "cursor on Slack is messages.posted_at, channels.created/updated or "
                    "users.updated"
                )
        key = METHODS[request.object][2]
        needed = list(dict.fromkeys([*request.fields, key]
                                    + ([request.cursor_field] if request.cursor_field else [])))  # fmt: skip
        limit = min(request.page_size or DEFAULT_LIMIT, MAX_LIMIT[request.object])
        window = request.cursor_window()
        if request.object == "messages":
            frames = (
                frame
                for channel in self._message_channels(limit)
                for frame in self._history(channel, request, schema, needed, limit)
            )
        else:
            params = {"limit": limit}
            if request.object == "channels":
                params["types"] = self.channel_types
            frames = (p.frame for p in self._pages(request.object, schema, needed, params))
        for frame in frames:
            if window is not None:
                frame = frame.filter(window)
            yield frame.select(request.fields)

    def _pages(
        self, object_name: str, schema: ObjectSchema, needed: list[str], params: dict[str, Any]
    ) -> Iterator[Page]:
        method, list_key, _ = METHODS[object_name]
        parser = PageParser(object_name, list_key, schema, needed, self)

        def fetch(state: tuple[int, dict[str, Any]]) -> Page:
            number, query = state
            return self.call(method, query, parse=lambda raw: parser.parse(raw, number, method))

        def next_of(state: tuple[int, dict[str, Any]], page: Page) -> Any:
            if page.has_more is True and not page.next_cursor:
                raise MalformedResponse(
                    f"{method}: page {page.number} says has_more but has no next_cursor"
                )
            if not page.next_cursor or page.has_more is False:
                return None
            return page.number + 1, {**state[1], "cursor": page.next_cursor}

        return paginate(fetch, (1, params), next_of)

    def _message_channels(self, limit: int) -> list[str]:
        if self.channels:
            return list(self.channels)
        schema = self.describe("channels")
        pages = self._pages("channels", schema, ["id", "is_member"],
                            {"limit": min(limit, 1000), "types": self.channel_types})  # fmt: skip
        listed = pl.concat([p.frame for p in pages])
        return listed.filter(pl.col("is_member").fill_null(False))["id"].to_list()

    def _history(
        self,
        channel: str,
        request: ReadRequest,
        schema: ObjectSchema,
        needed: list[str],
        limit: int,
    ) -> Iterator[pl.DataFrame]:
        params: dict[str, Any] = {"channel": channel, "limit": limit, "inclusive": 0}
        lows = [t for t in (request.cursor_after,) if t is not None]
        if request.cursor_from is not None:
            lows.append(request.cursor_from - timedelta(microseconds=1))  # oldest is exclusive
        if request.cursor_field == "posted_at":
            if lows:
                params["oldest"] = ts_of(max(lows))
            if request.cursor_before is not None:
                params["latest"] = ts_of(request.cursor_before)
        for page in self._pages("messages", schema, needed, params):
            yield page.frame.with_columns(channel=pl.lit(channel, _TEXT)).select(needed)


class PageParser:
    """One answer's bytes -> ok checked, then a typed frame of the needed fields (Polars)."""

    def __init__(
        self,
        object_name: str,
        list_key: str,
        schema: ObjectSchema,
        names: list[str],
        client: SlackClient,
    ):
        self.object_name = object_name
        self.list_key = list_key
        self.client = client
        infos = [schema.fields[n] for n in names if n != "channel"]
        if "posted_at" in names and "ts" not in names:
            infos.append(schema.fields["ts"])
        self.infos = [i for i in infos if i.source_type != _TS]
        self.derived = [i.name for i in infos if i.source_type == _TS]
        self.wire = pl.Schema({i.name: _INT if i.dtype == _TIME else i.dtype for i in self.infos})
        self.names = [n for n in names if n != "channel"]

    def parse(self, raw: bytes, number: int, method: str) -> Page:
        where = f"page {number} of {self.object_name} ({method})"
        envelope_schema = {
            "ok": pl.Boolean,
            "error": pl.String,
            self.list_key: pl.List(pl.Struct(self.wire)),
            "has_more": pl.Boolean,
            "response_metadata": pl.Struct({"next_cursor": pl.String}),
        }
        try:
            envelope = pl.read_json(io.BytesIO(raw), schema=envelope_schema)
        except pl.exceptions.PolarsError:
            raise MalformedResponse(explain_page(
                raw, where, self.list_key, self.infos,
                fits=lambda value, info: json_fits(value, info, temporal=int),
                record_id=lambda r: r.get("id") or r.get("ts", "?"),
                answer=f"a {self.list_key} answer",
            )) from None  # fmt: skip
        if envelope.height != 1 or envelope["ok"][0] is None:
            raise MalformedResponse(f"{where} has no 'ok'")
        if not envelope["ok"][0]:
            raise self.client._refusal(method, _json(raw, method))
        records = envelope[self.list_key][0]
        if records is None:
            raise MalformedResponse(f"{where} has no '{self.list_key}' list")
        frame = records.struct.unnest() if len(records) else pl.DataFrame(schema=self.wire)
        typed = frame.with_columns(
            [pl.from_epoch(i.name, time_unit="s" if i.source_type == _SECONDS else "ms")
             .dt.replace_time_zone("UTC") for i in self.infos if i.dtype == _TIME]
            + [ts_to_time("ts").alias(n) for n in self.derived]
        )  # fmt: skip
        key = METHODS[self.object_name][2]
        if typed[key].null_count():
            raise MalformedResponse(f"{where}: a record has no {key}")
        for name in self.derived:
            bad = typed.filter(pl.col(name).is_null())
            if bad.height:
                raise MalformedResponse(f"{where}: record {bad['ts'][0]}: ts is not a Slack ts")
        metadata = envelope["response_metadata"][0]
        return Page(
            number,
            typed.select(self.names),
            (metadata or {}).get("next_cursor") or None,
            envelope["has_more"][0],
        )
