"""Local Slack Web API stand-in: auth.test, conversations.list, conversations.history,
users.list and oauth.v2.access (token rotation), with ok:false error bodies, cursor paging,
429 + Retry-After and injectable faults, over deterministic data, for tests and demos."""

from __future__ import annotations

import base64
import json
import random
import secrets
import threading
from collections.abc import Mapping
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl

from flow_assets.sandbox.authorization_codes import AuthorizationCodes
from flow_assets.sandbox.faults import Fault
from flow_assets.sandbox.server import Reply, SandboxServer, basic_credentials, json_body

FAULT_KINDS = ("expire_token", "429", "503", "malformed")
TEAM_ID = "T0SANDBOX"
BOT_USER = "U0BOT00001"
_START = 1_700_000_000  # 2023-11-14T22:13:20Z
_JSON = "application/json; charset=utf-8"
_CHANNEL_TYPES = {"public_channel", "private_channel", "mpim", "im"}


def _fail(error: str, status: int = 200, **extra: Any) -> Reply:
    """Slack's error answer: HTTP 200 (mostly) and {"ok": false, "error": ...}."""
    return Reply(status, json_body({"ok": False, "error": error, **extra}))


def _cursor(kind: str, position: str) -> str:
    return base64.b64encode(f"{kind}:{position}".encode()).decode()


def _uncursor(kind: str, cursor: str) -> str | None:
    try:
        found, _, position = base64.b64decode(cursor, validate=True).decode().partition(":")
    except ValueError:
        return None
    return position if found == kind else None


def build_workspace(channels: int, users: int, messages: int, seed: int) -> dict[str, list]:
    """Deterministic channels, users and messages in Slack's JSON shape. The bot is a member
    of every channel but the last (whose history it cannot read); every 5th channel is private,
    every 7th archived. Message ts are unique across channels; every 10th is one microsecond
    after the one before it, and some end in zeros (".000100")."""
    rng = random.Random(seed)
    user_rows = []
    for i in range(users):
        uid = f"U{i:09d}"
        user_rows.append({
            "id": uid, "team_id": TEAM_ID, "name": f"user{i}", "real_name": f"User {i}",
            "deleted": i % 11 == 10, "color": f"{rng.randrange(0x1000000):06x}",
            "tz": "Europe/Paris" if i % 2 else "America/New_York",
            "tz_label": "Central European Time" if i % 2 else "Eastern Standard Time",
            "tz_offset": 3600 if i % 2 else -18000, "is_admin": i == 0, "is_owner": i == 0,
            "is_primary_owner": i == 0, "is_restricted": False, "is_ultra_restricted": False,
            "is_bot": False, "is_app_user": False,
            "updated": _START + rng.randrange(0, 86400 * 100),
            "profile": {"real_name": f"User {i}", "email": f"user{i}@example.com"},
        })  # fmt: skip
    channel_rows = []
    for i in range(channels):
        created = _START - rng.randrange(86400, 86400 * 400)
        channel_rows.append({
            "id": f"C{i:09d}", "name": f"channel-{i}", "name_normalized": f"channel-{i}",
            "is_channel": i % 5 != 4, "is_group": i % 5 == 4, "is_im": False, "is_mpim": False,
            "is_private": i % 5 == 4, "is_archived": i % 7 == 6, "is_general": i == 0,
            "is_shared": False, "is_ext_shared": False, "is_member": i != channels - 1,
            "creator": user_rows[i % users]["id"], "num_members": 3 + i % 9,
            "created": created, "updated": (created + rng.randrange(0, 86400 * 300)) * 1000 + i,
            "topic": {"value": f"topic {i}", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        })  # fmt: skip
    used: set[int] = set()
    message_rows = []
    micros = _START * 1_000_000
    for i in range(messages):
        if i % 10 == 9:
            micros += 1
        elif i % 13 == 0:
            micros = (micros // 1_000_000 + rng.randrange(1, 5000)) * 1_000_000 + 100
        else:
            micros += rng.randrange(1, 3_000_000_000)
        assert micros not in used
        used.add(micros)
        ts = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
        channel = channel_rows[rng.randrange(channels)]["id"]
        row: dict[str, Any] = {
            "channel": channel, "type": "message", "ts": ts, "text": f"message {i}",
            "user": user_rows[rng.randrange(users)]["id"], "team": TEAM_ID,
            "blocks": [{"type": "rich_text", "elements": []}],
        }  # fmt: skip
        if i % 17 == 5:
            row.update(subtype="bot_message", bot_id="B0SANDBOX1", user=None)
        if i % 8 == 3:
            row.update(thread_ts=ts, reply_count=1 + i % 4, reply_users_count=1,
                       latest_reply=f"{micros // 1_000_000 + 60}.000000")  # fmt: skip
        message_rows.append({k: v for k, v in row.items() if v is not None})
    return {"channels": channel_rows, "users": user_rows, "messages": message_rows}


_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "channels": {
        "id": pl.String(), "name": pl.String(), "name_normalized": pl.String(),
        "is_channel": pl.Boolean(), "is_group": pl.Boolean(), "is_im": pl.Boolean(),
        "is_mpim": pl.Boolean(), "is_private": pl.Boolean(), "is_archived": pl.Boolean(),
        "is_general": pl.Boolean(), "is_shared": pl.Boolean(), "is_ext_shared": pl.Boolean(),
        "is_member": pl.Boolean(), "creator": pl.String(), "num_members": pl.Int64(),
        "created": pl.Int64(), "updated": pl.Int64(),
    },
    "users": {
        "id": pl.String(), "team_id": pl.String(), "name": pl.String(),
        "real_name": pl.String(), "deleted": pl.Boolean(), "color": pl.String(),
        "tz": pl.String(), "tz_label": pl.String(), "tz_offset": pl.Int64(),
        "is_admin": pl.Boolean(), "is_owner": pl.Boolean(), "is_primary_owner": pl.Boolean(),
        "is_restricted": pl.Boolean(), "is_ultra_restricted": pl.Boolean(),
        "is_bot": pl.Boolean(), "is_app_user": pl.Boolean(), "updated": pl.Int64(),
    },
    "messages": {
        "channel": pl.String(), "ts": pl.String(), "type": pl.String(), "subtype": pl.String(),
        "user": pl.String(), "bot_id": pl.String(), "text": pl.String(),
        "thread_ts": pl.String(), "reply_count": pl.Int64(), "reply_users_count": pl.Int64(),
        "latest_reply": pl.String(),
    },
}  # fmt: skip


def typed_frame(object_name: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Records typed as the connector documents them; times as Datetime(us, UTC), worked out
    here from the wire values independently of the connector."""
    schema = _SCHEMAS[object_name]
    frame = pl.DataFrame([{n: r.get(n) for n in schema} for r in rows], schema=schema,
                         orient="row")  # fmt: skip
    utc = pl.Datetime("us", "UTC")
    if object_name == "messages":
        seconds = pl.col("ts").str.split(".").list.get(0).cast(pl.Int64)
        micro = pl.col("ts").str.split(".").list.get(1).cast(pl.Int64)
        return frame.with_columns(
            posted_at=(seconds * 1_000_000 + micro)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
        )
    times = {"created": 1_000_000, "updated": 1_000 if object_name == "channels" else 1_000_000}
    return frame.with_columns(
        (pl.col(n) * factor).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(utc)
        for n, factor in times.items()
        if n in schema
    )


class SlackSandbox(SandboxServer):
    """A Slack Web API stand-in on 127.0.0.1 (methods under /api/) with deterministic data.

    Credentials: a non-expiring bot token `bot_token` (xoxb-), and an app (`client_id`,
    `client_secret`) with token rotation: oauth.v2.access exchanges `refresh_token` (single
    use: each exchange revokes it and issues the next) for an expiring xoxe.xoxb- token.
    """

    product = "Slack"
    content_type = _JSON
    fault_kinds = FAULT_KINDS

    def __init__(
        self,
        port: int = 0,
        channels: int = 8,
        users: int = 60,
        messages: int = 400,
        seed: int = 11,
        bot_token: str = "xoxb-sandbox-bot-token",
        client_id: str = "1111.2222",
        client_secret: str = "sandbox-client-secret",
        refresh_token: str = "xoxe-1-sandbox-refresh",
    ) -> None:
        super().__init__(port)
        self.seed = seed
        self.bot_token = bot_token
        self.client_id = client_id
        self.client_secret = client_secret
        self._data = build_workspace(channels, users, messages, seed)
        self._refresh_tokens: set[str] = {refresh_token}
        self._access_tokens: set[str] = set()
        self._lock = threading.Lock()
        self.requests: list[str] = []  # paths with queries, in order (never a credential)
        self.rotations = 0

    # --- truth, credentials, faults ----------------------------------------------

    def frame(self, object_name: str) -> pl.DataFrame:
        """The typed truth: every channel, user and message (of every channel, the ones the
        bot is not a member of too)."""
        if object_name not in self._data:
            raise KeyError(f"unknown object {object_name!r}; known: {sorted(self._data)}")
        return typed_frame(object_name, self._data[object_name])

    def member_channels(self) -> list[str]:
        return [c["id"] for c in self._data["channels"] if c["is_member"]]

    def issue_access_token(self) -> str:
        token = "xoxe.xoxb-1-" + secrets.token_hex(24)
        with self._lock:
            self._access_tokens.add(token)
        return token

    def issue_refresh_token(self) -> str:
        token = "xoxe-1-" + secrets.token_hex(24)
        with self._lock:
            self._refresh_tokens.add(token)
        return token

    def expire_tokens(self) -> None:
        """Every rotating access token issued so far passes its expires_in."""
        with self._lock:
            self._access_tokens.clear()

    @cached_property
    def authorization_codes(self) -> AuthorizationCodes:
        """GET /oauth/v2/authorize's codes (slack.com's install page, "Allow" clicked)."""
        return AuthorizationCodes(self.client_id)

    # --- requests ----------------------------------------------------------------

    def respond(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = urlsplit(raw_path)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            self.requests.append(target)
        if parts.path == "/oauth/v2/authorize":
            return Reply(*self.authorization_codes.authorize(method, parts.query))
        if not parts.path.startswith("/api/"):
            return Reply(404, b"Not Found", {"Content-Type": "text/plain"})
        api_method = parts.path.removeprefix("/api/")
        # Arguments: a query string, and for POST a form or a JSON body (Slack takes all three).
        args = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        kind = headers.get("Content-Type") or ""
        if method == "POST" and body:
            try:
                if "json" in kind:
                    args.update({k: str(v) for k, v in json.loads(body).items()})
                else:
                    args.update({k: v[-1] for k, v in parse_qs(body.decode()).items()})
            except ValueError:
                return _fail("invalid_form_data")
        if api_method == "oauth.v2.access":
            return self._exchange(args, headers)
        fault = self.faults.take(target)
        if fault is not None and fault.kind != "malformed":
            return self._fault_reply(fault)
        reply = self._route(api_method, args, headers)
        if fault is not None:  # malformed: a 200 whose JSON stops half way
            return Reply(200, reply.body[: max(1, len(reply.body) // 2)])
        return reply

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "expire_token":
            self.expire_tokens()
            return _fail("token_expired")
        seconds = "1" if fault.retry_after is None else f"{fault.retry_after:g}"
        if fault.kind == "503":
            return Reply(503, json_body({"ok": False, "error": "service_unavailable"}),
                          {"Retry-After": seconds})  # fmt: skip
        # Rate limited: HTTP 429, Retry-After in seconds, and an ok:false body.
        return Reply(
            429, json_body({"ok": False, "error": "ratelimited"}), {"Retry-After": seconds}
        )

    def _token_of(self, args: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
        value = headers.get("Authorization") or ""
        if value.startswith("Bearer "):
            return value.removeprefix("Bearer ").strip()
        return args.get("token")  # Slack also takes the token as an argument

    def _caller_error(self, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        if secrets.compare_digest(token, self.bot_token):
            return None
        with self._lock:
            if token in self._access_tokens:
                return None
        # A rotating token that expired answers token_expired; anything else invalid_auth.
        return "token_expired" if token.startswith("xoxe.xoxb-") else "invalid_auth"

    def _exchange(self, args: Mapping[str, str], headers: Mapping[str, str]) -> Reply:
        client_id, client_secret = args.get("client_id"), args.get("client_secret")
        basic = basic_credentials(headers)
        if basic is not None:  # the client may authenticate with HTTP basic auth
            client_id, client_secret = basic
        if client_id != self.client_id:
            return _fail("invalid_client_id")
        if not secrets.compare_digest(client_secret or "", self.client_secret):
            return _fail("bad_client_secret")
        # A code (grant_type authorization_code, or none): installing the app; with token
        # rotation on, the answer holds a refresh token.
        grant = args.get("grant_type") or ("authorization_code" if "code" in args else "")
        if grant == "authorization_code":
            refusal = self.authorization_codes.redeem(
                args.get("code"), client_id, args.get("redirect_uri"), args.get("code_verifier")
            )
            if refusal is not None:
                return _fail("bad_redirect_uri" if refusal.reason == "redirect_uri" else
                             "invalid_code")  # fmt: skip
            return self._token_answer()
        if args.get("grant_type") != "refresh_token":
            return _fail("invalid_grant_type")
        with self._lock:
            used = args.get("refresh_token") or ""
            if used not in self._refresh_tokens:
                return _fail("invalid_refresh_token")
            self._refresh_tokens.discard(used)  # single use: the exchange revokes it
            self.rotations += 1
        return self._token_answer()

    def _token_answer(self) -> Reply:
        access, refresh = self.issue_access_token(), self.issue_refresh_token()
        return Reply(200, json_body({
            "ok": True, "app_id": "A0SANDBOX1", "authed_user": {"id": "U000000000"},
            "scope": "channels:read,channels:history,groups:read,groups:history,users:read",
            "token_type": "bot", "access_token": access, "bot_user_id": BOT_USER,
            "refresh_token": refresh, "expires_in": 43200,
            "team": {"id": TEAM_ID, "name": "Flowbridge Sandbox"}, "enterprise": None,
            "is_enterprise_install": False,
        }))  # fmt: skip

    def _route(self, api_method: str, args: dict[str, str], headers: Mapping[str, str]) -> Reply:
        if api_method == "api.test":
            return Reply(200, json_body({"ok": True, "args": args}))
        error = self._caller_error(self._token_of(args, headers))
        if error is not None:
            return _fail(error)
        if api_method == "auth.test":
            return Reply(200, json_body({"ok": True, "url": "https://sandbox.slack.com/",
                                      "team": "Flowbridge Sandbox", "user": "flowbridge",
                                      "team_id": TEAM_ID, "user_id": BOT_USER,
                                      "bot_id": "B0SANDBOX1", "is_enterprise_install": False}))  # fmt: skip
        if api_method == "conversations.list":
            return self._list(args)
        if api_method == "users.list":
            return self._users(args)
        if api_method == "conversations.history":
            return self._history(args)
        return _fail("unknown_method")

    def _limit(self, args: Mapping[str, str], default: int) -> int | None:
        """The `limit` argument: 0 or missing means the default; not a count means None."""
        try:
            limit = int(args.get("limit") or default)
        except ValueError:
            return None
        return None if limit < 0 else limit or default

    def _offset_page(self, kind: str, rows: list, args: Mapping[str, str], limit: int) -> Any:
        start = 0
        if args.get("cursor"):
            position = _uncursor(kind, args["cursor"])
            if position is None or not position.isdigit():
                return None
            start = int(position)
        page = rows[start : start + limit]
        more = start + limit < len(rows)
        return page, _cursor(kind, str(start + limit)) if more else ""

    def _list(self, args: dict[str, str]) -> Reply:
        types = set((args.get("types") or "public_channel").split(","))
        if not types <= _CHANNEL_TYPES:
            return _fail("invalid_types")
        limit = self._limit(args, 100)
        if limit is None:
            return _fail("invalid_limit")
        limit = min(limit, 1000)
        rows = [
            {k: v for k, v in c.items() if k != "channel"}
            for c in self._data["channels"]
            if ("private_channel" if c["is_private"] else "public_channel") in types
            and not (args.get("exclude_archived") in ("true", "1") and c["is_archived"])
        ]
        paged = self._offset_page("channel", rows, args, limit)
        if paged is None:
            return _fail("invalid_cursor")
        page, cursor = paged
        return Reply(200, json_body({"ok": True, "channels": page,
                                  "response_metadata": {"next_cursor": cursor}}))  # fmt: skip

    def _users(self, args: dict[str, str]) -> Reply:
        limit = self._limit(args, 0)
        if limit is None:
            return _fail("invalid_limit")
        rows = self._data["users"]
        paged = self._offset_page("user", rows, args, min(limit or len(rows), 1000))
        if paged is None:
            return _fail("invalid_cursor")
        page, cursor = paged
        return Reply(200, json_body({"ok": True, "members": page, "cache_ts": _START,
                                  "response_metadata": {"next_cursor": cursor}}))  # fmt: skip

    def _history(self, args: dict[str, str]) -> Reply:
        channel = next((c for c in self._data["channels"] if c["id"] == args.get("channel")), None)
        if channel is None:
            return _fail("channel_not_found")
        if not channel["is_member"]:
            return _fail("not_in_channel")
        limit = self._limit(args, 100)
        if limit is None:
            return _fail("invalid_limit")
        limit = min(limit, 999)
        try:
            oldest = _micros(args.get("oldest") or "0")
            latest = _micros(args["latest"]) if args.get("latest") else None
        except ValueError:
            return _fail("invalid_ts_oldest" if "oldest" in args else "invalid_ts_latest")
        inclusive = args.get("inclusive") in ("1", "true")
        # Newest first, as Slack answers; a cursor names the last ts served.
        rows = sorted(
            (m for m in self._data["messages"] if m["channel"] == channel["id"]),
            key=lambda m: _micros(m["ts"]),
            reverse=True,
        )

        def inside(ts: int) -> bool:
            low = ts >= oldest if inclusive else ts > oldest
            high = latest is None or (ts <= latest if inclusive else ts < latest)
            return low and high

        rows = [m for m in rows if inside(_micros(m["ts"]))]
        if args.get("cursor"):
            position = _uncursor("next_ts", args["cursor"])
            if position is None:
                return _fail("invalid_cursor")
            last = _micros(position)
            rows = [m for m in rows if _micros(m["ts"]) < last]
        page, more = rows[:limit], len(rows) > limit
        answer: dict[str, Any] = {
            "ok": True,
            "messages": [{k: v for k, v in m.items() if k != "channel"} for m in page],
            "has_more": more, "pin_count": 0,
        }  # fmt: skip
        if more:
            answer["response_metadata"] = {"next_cursor": _cursor("next_ts", page[-1]["ts"])}
        return Reply(200, json_body(answer))

    def internal_error(self) -> Reply:
        return Reply(500, json_body({"ok": False, "error": "internal_error"}))


def _micros(ts: str) -> int:
    """A ts ("seconds.micro") as integer microseconds; ValueError if it is not one."""
    seconds, _, fraction = ts.partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 6:
        raise ValueError(ts)
    return int(seconds) * 1_000_000 + int(fraction.ljust(6, "0") or 0)
