"""Local ServiceNow stand-in: the Table API (encoded queries, offset paging with Link headers,
values as text), the sys_db_object and sys_dictionary tables, basic auth and OAuth on
/oauth_token.do, and injectable faults, with deterministic incidents and change requests."""

from __future__ import annotations

import random
import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import polars as pl

from flow_assets.sandbox.faults import Fault
from flow_assets.sandbox.server import Reply, SandboxServer, basic_credentials, json_body

FAULT_KINDS = ("expire_token", "429", "503", "malformed")
MAX_LIMIT = 10_000
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_JSON = "application/json;charset=UTF-8"
_TABLE = "/api/now/table/"

# The data dictionary: (table, element, internal_type). incident and change_request extend task.
_TASK = [
    ("sys_id", "GUID"), ("number", "string"), ("short_description", "string"),
    ("description", "string"), ("state", "integer"), ("priority", "integer"),
    ("impact", "integer"), ("urgency", "integer"), ("active", "boolean"),
    ("assigned_to", "reference"), ("assignment_group", "reference"),
    ("opened_at", "glide_date_time"), ("closed_at", "glide_date_time"),
    ("due_date", "due_date"), ("sys_class_name", "sys_class_name"),
    ("sys_created_by", "string"), ("sys_created_on", "glide_date_time"),
    ("sys_updated_on", "glide_date_time"), ("sys_mod_count", "integer"),
]  # fmt: skip
_OWN = {
    "incident": [("category", "string"), ("caller_id", "reference"),
                 ("reopen_count", "integer"), ("severity", "integer"),
                 ("resolved_at", "glide_date_time"), ("u_cost", "decimal")],
    "change_request": [("type", "string"), ("risk", "integer"), ("start_date", "glide_date_time"),
                       ("end_date", "glide_date_time"), ("cab_required", "boolean"),
                       ("cab_date", "glide_date"), ("u_estimate_hours", "decimal")],
}  # fmt: skip
_META = {
    "sys_db_object": ["sys_id", "name", "label", "super_class"],
    "sys_dictionary": ["sys_id", "name", "element", "internal_type", "mandatory"],
}
_NUMBERS = {"integer": int, "longint": int, "decimal": float, "float": float}
_POLARS = {"integer": pl.Int64, "longint": pl.Int64, "decimal": pl.Float64, "float": pl.Float64,
           "boolean": pl.Boolean, "glide_date_time": pl.Datetime("us", "UTC"),
           "due_date": pl.Datetime("us", "UTC"), "glide_date": pl.Date}  # fmt: skip
_OPS = ("ISNOTEMPTY", "ISEMPTY", "BETWEEN", "NOT IN", "IN", "STARTSWITH", "LIKE",
        ">=", "<=", "!=", "=", ">", "<")  # fmt: skip


def _failure(status: int, message: str, detail: str | None = None, **headers: str) -> Reply:
    """ServiceNow's REST error shape."""
    return Reply(status, json_body({"error": {"message": message, "detail": detail},
                                 "status": "failure"}), headers)  # fmt: skip


def _guid(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def split_query(query: str) -> list[str]:
    """An encoded query's parts: split on `^`, where `^^` is a literal `^`."""
    parts, current, i = [], [], 0
    while i < len(query):
        if query[i] == "^":
            if query[i + 1 : i + 2] == "^":
                current.append("^")
                i += 2
                continue
            parts.append("".join(current))
            current = []
        else:
            current.append(query[i])
        i += 1
    parts.append("".join(current))
    return [p for p in parts if p]


def build_tables(records: int, seed: int) -> dict[str, list[dict[str, str]]]:
    """Deterministic incidents (`records`) and change requests (records // 2, at least 10), as
    the Table API sends them: every value text, "" when empty. Every 4th record shares its
    sys_updated_on second with the one before it; a few short descriptions contain `^`."""
    rng = random.Random(seed)
    users = [_guid(rng) for _ in range(8)]
    groups = [_guid(rng) for _ in range(3)]
    tables: dict[str, list[dict[str, str]]] = {}
    for table, count, prefix in (("incident", records, "INC"),
                                 ("change_request", max(10, records // 2), "CHG")):  # fmt: skip
        rows, previous = [], _EPOCH
        for i in range(count):
            opened = _EPOCH + timedelta(seconds=rng.randrange(0, 86400 * 90))
            updated = opened + timedelta(seconds=rng.randrange(0, 86400 * 100))
            if i % 4 == 3:
                updated = max(previous, opened)  # a second shared with the record before
            previous = updated
            state = rng.choice((1, 2, 3, 6, 7))
            closed = updated if state == 7 else None
            row = {
                "sys_id": _guid(rng), "number": f"{prefix}{1000000 + i:07d}",
                "short_description": f"Issue {i}" + (" ^ caret" if i % 25 == 0 else ""),
                "description": "" if i % 3 else f"Details of {prefix} {i}",
                "state": str(state), "priority": str(1 + i % 5), "impact": str(1 + i % 3),
                "urgency": str(1 + (i // 3) % 3), "active": "false" if state == 7 else "true",
                "assigned_to": "" if i % 6 == 0 else users[i % len(users)],
                "assignment_group": groups[i % len(groups)],
                "opened_at": opened.strftime(TIME_FORMAT),
                "closed_at": closed.strftime(TIME_FORMAT) if closed else "",
                "due_date": "" if i % 2 else (opened + timedelta(days=5)).strftime(TIME_FORMAT),
                "sys_class_name": table, "sys_created_by": "admin",
                "sys_created_on": opened.strftime(TIME_FORMAT),
                "sys_updated_on": updated.strftime(TIME_FORMAT),
                "sys_mod_count": str(rng.randrange(0, 40)),
            }  # fmt: skip
            if table == "incident":
                row |= {
                    "category": rng.choice(("network", "software", "hardware", "inquiry")),
                    "caller_id": users[(i * 3) % len(users)], "reopen_count": str(i % 3),
                    "severity": str(1 + i % 3),
                    "resolved_at": closed.strftime(TIME_FORMAT) if closed else "",
                    "u_cost": "" if i % 7 == 0 else f"{rng.randrange(0, 100000) / 100:.2f}",
                }  # fmt: skip
            else:
                start = opened + timedelta(days=rng.randrange(1, 30))
                row |= {
                    "type": rng.choice(("normal", "standard", "emergency")),
                    "risk": str(2 + i % 3), "start_date": start.strftime(TIME_FORMAT),
                    "end_date": (start + timedelta(hours=4)).strftime(TIME_FORMAT),
                    "cab_required": "true" if i % 2 else "false",
                    "cab_date": "" if i % 2 == 0 else (start - timedelta(days=1)).date().isoformat(),
                    "u_estimate_hours": f"{rng.randrange(1, 400) / 4:.2f}",
                }  # fmt: skip
            rows.append(row)
        tables[table] = rows
    return tables


def _typed(text: str, kind: str) -> Any:
    if text == "":
        return None
    if kind in _NUMBERS:
        return _NUMBERS[kind](text)
    if kind == "boolean":
        return text == "true"
    if kind in ("glide_date_time", "due_date"):
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    if kind == "glide_date":
        return date.fromisoformat(text)
    return text


class ServiceNowSandbox(SandboxServer):
    """A ServiceNow instance stand-in on 127.0.0.1 with deterministic data.

    Credentials: the user `username`/`password` (basic auth, or OAuth's password grant), and
    an OAuth client (`client_id`, `client_secret`) for POST /oauth_token.do (password,
    refresh_token and client_credentials grants).
    """

    product = "ServiceNow"
    content_type = _JSON
    fault_kinds = FAULT_KINDS

    def __init__(
        self,
        port: int = 0,
        records: int = 500,
        seed: int = 11,
        username: str = "flowbridge.integration",
        password: str = "sandbox-password",
        client_id: str = "flowbridge-sandbox",
        client_secret: str = "sandbox-secret",
        link_header: bool = True,
    ) -> None:
        super().__init__(port)
        self.records = records
        self.seed = seed
        self.username = username
        self.password = password
        self.client_id = client_id
        self.client_secret = client_secret
        self.link_header = link_header  # ServiceNow sends one; False tests plain offset paging
        self._data = build_tables(records, seed)
        self._dictionary = {"task": _TASK, **_OWN}
        self._access_tokens: set[str] = set()
        self._refresh_tokens: set[str] = set()
        self._lock = threading.Lock()
        self.requests: list[str] = []  # paths with queries, in order (no credentials in them)
        self.grants: list[str] = []  # grant types asked of /oauth_token.do, in order
        rng = random.Random(seed + 1)
        ids = {name: _guid(rng) for name in ("task", *_OWN, *_META)}
        self._meta = {
            "sys_db_object": [
                {"sys_id": ids[name], "name": name, "label": name.replace("_", " ").title(),
                 "super_class": ids["task"] if name in _OWN else ""}
                for name in ids
            ],
            "sys_dictionary": [
                {"sys_id": _guid(rng), "name": table, "element": element, "internal_type": kind,
                 "mandatory": "true" if element == "sys_id" else "false"}
                for table, entries in self._dictionary.items()
                for element, kind in [("", "collection"), *entries]
            ],
        }  # fmt: skip

    # --- truth, credentials, faults ----------------------------------------------

    def types(self, table: str) -> dict[str, str]:
        """element -> internal_type of a data table, its parents' fields included."""
        if table not in _OWN:
            raise KeyError(f"unknown table {table!r}; known: {sorted(_OWN)}")
        return dict(_TASK + _OWN[table])

    def frame(self, table: str) -> pl.DataFrame:
        """The typed truth behind a table: empty values are null."""
        types = self.types(table)
        schema = {n: _POLARS.get(k, pl.String) for n, k in types.items()}
        rows = [[_typed(r[n], types[n]) for n in types] for r in self._data[table]]
        return pl.DataFrame(rows, schema=schema, orient="row")

    def wire_records(self, table: str) -> list[dict[str, str]]:
        return self._data[table]

    def issue_access_token(self) -> str:
        token = secrets.token_hex(32)
        with self._lock:
            self._access_tokens.add(token)
        return token

    def expire_tokens(self) -> None:
        """Access tokens past their lifetime (30 minutes by default on an instance)."""
        with self._lock:
            self._access_tokens.clear()

    def expire_refresh_tokens(self) -> None:
        """Refresh tokens past their lifetime (100 days by default)."""
        with self._lock:
            self._refresh_tokens.clear()

    # --- requests ----------------------------------------------------------------

    def respond(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = urlsplit(raw_path)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            self.requests.append(target)
        if parts.path == "/oauth_token.do" and method == "POST":
            return self._token(headers, body)
        fault = self.faults.take(target)
        if fault is not None and fault.kind != "malformed":
            return self._fault_reply(fault)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        reply = self._route(method, parts.path, query, headers)
        if fault is not None:  # malformed: a 200 whose JSON stops half way
            return Reply(200, reply.body[: max(1, len(reply.body) // 2)], reply.headers)
        return reply

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "expire_token":
            self.expire_tokens()
            return self._unauthorized()
        seconds = "1" if fault.retry_after is None else f"{fault.retry_after:g}"
        if fault.kind == "503":
            return _failure(503, "Service Unavailable", "The instance is unavailable",
                            **{"Retry-After": seconds})  # fmt: skip
        # A rate limit rule's violation: 429, Retry-After in seconds, and the rule's headers.
        return _failure(429, "Rate limit exceeded",
                        "The request exceeded the rate limit rule for this user",
                        **{"Retry-After": seconds, "X-RateLimit-Limit": "5000",
                           "X-RateLimit-Rule": "b9c0e0b2db4b1010sandboxrule0000"})  # fmt: skip

    @staticmethod
    def _unauthorized() -> Reply:
        return _failure(401, "User Not Authenticated", "Required to provide Auth information")

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        scheme, _, credential = (headers.get("Authorization") or "").partition(" ")
        if scheme == "Bearer":
            with self._lock:
                return credential in self._access_tokens
        basic = basic_credentials(headers)
        if basic is not None:
            user, secret = basic
            return user == self.username and secrets.compare_digest(secret, self.password)
        return False

    def _token(self, headers: Mapping[str, str], body: bytes) -> Reply:
        denied = Reply(
            401, json_body({"error_description": "access_denied", "error": "server_error"})
        )
        if "json" in (headers.get("Content-Type") or ""):  # the endpoint takes a form only
            return Reply(400, json_body({"error_description": "unsupported content type",
                                      "error": "server_error"}))  # fmt: skip
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}
        grant = form.get("grant_type", "")
        with self._lock:
            self.grants.append(grant)
        if form.get("client_id") != self.client_id or not secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        ):
            return denied
        refresh = None
        if grant == "password":
            if form.get("username") != self.username or not secrets.compare_digest(
                form.get("password", ""), self.password
            ):
                return denied
            refresh = secrets.token_hex(32)
        elif grant == "refresh_token":
            with self._lock:
                if form.get("refresh_token") not in self._refresh_tokens:
                    return denied
            refresh = form["refresh_token"]
        elif grant != "client_credentials":
            return Reply(400, json_body({"error_description": "unsupported grant_type",
                                      "error": "server_error"}))  # fmt: skip
        answer: dict[str, Any] = {"access_token": self.issue_access_token(),
                                  "scope": "useraccount", "token_type": "Bearer",
                                  "expires_in": 1799}  # fmt: skip
        if refresh:
            with self._lock:
                self._refresh_tokens.add(refresh)
            answer["refresh_token"] = refresh
        return Reply(200, json_body(answer))

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str]
    ) -> Reply:
        if not self._authorized(headers):
            return self._unauthorized()
        if method != "GET":
            return _failure(405, "Method not Supported", "The sandbox reads only")
        if not path.startswith(_TABLE):
            return _failure(400, "Requested URI does not represent any resource", path)
        table = path[len(_TABLE) :]
        if table in _OWN:
            rows, types = self._data[table], self.types(table)
        elif table in _META:
            rows, types = self._meta[table], dict.fromkeys(_META[table], "string")
        else:
            return _failure(400, f"Invalid table {table}", None)
        try:
            limit = int(query.get("sysparm_limit") or MAX_LIMIT)
            offset = int(query.get("sysparm_offset") or 0)
        except ValueError:
            return _failure(400, "Invalid sysparm_limit or sysparm_offset", None)
        limit = max(1, min(limit, MAX_LIMIT))
        matching = self._query(rows, types, query.get("sysparm_query", ""))
        page = matching[offset : offset + limit]
        names = [n for n in (query.get("sysparm_fields") or "").split(",") if n in types]
        names = names or list(types)
        links = query.get("sysparm_exclude_reference_link", "false") != "true"
        result = [{n: self._wire(r[n], types[n], links) for n in names if n in r} for r in page]
        reply_headers = {"X-Total-Count": str(len(matching))}
        if self.link_header:
            reply_headers["Link"] = self._links(path, query, offset, limit, len(matching))
        return Reply(200, json_body({"result": result}), reply_headers)

    def _wire(self, value: str, kind: str, links: bool) -> Any:
        if kind == "reference" and links and value:
            return {"link": f"{self.url}{_TABLE}sys_user/{value}", "value": value}
        return value

    def _links(self, path: str, query: dict[str, str], offset: int, limit: int, total: int) -> str:
        def at(where: int) -> str:
            return f"{self.url}{path}?{urlencode({**query, 'sysparm_offset': where, 'sysparm_limit': limit})}"  # noqa: E501

        last = max(0, (total - 1) // limit * limit)
        rels = [("first", 0)]
        if offset > 0:
            rels.append(("prev", max(0, offset - limit)))
        if offset + limit < total:
            rels.append(("next", offset + limit))
        rels.append(("last", last))
        return ",".join(f'<{at(where)}>;rel="{rel}"' for rel, where in rels)

    def _query(self, rows: list[dict], types: dict[str, str], query: str) -> list[dict]:
        """The rows an encoded query keeps, in its ORDERBY order. Supported: conditions ANDed
        with `^` (=, !=, <, <=, >, >=, BETWEEN a@b, IN a,b, LIKE, STARTSWITH, ISEMPTY,
        ISNOTEMPTY) and ORDERBY / ORDERBYDESC. As on an instance, a condition on a field the
        table lacks is ignored."""
        keep: list[Callable[[dict], bool]] = []
        order: list[tuple[str, bool]] = []
        for part in split_query(query):
            if part.startswith("ORDERBYDESC"):
                order.append((part[len("ORDERBYDESC") :], True))
                continue
            if part.startswith("ORDERBY"):
                order.append((part[len("ORDERBY") :], False))
                continue
            condition = self._condition(part, types)
            if condition is not None:
                keep.append(condition)
        kept = [r for r in rows if all(test(r) for test in keep)]
        for name, descending in reversed(order):
            if name in types:
                kind = types[name]
                kept.sort(key=lambda r, n=name, k=kind: _sort_key(r[n], k), reverse=descending)
        return kept

    def _condition(self, part: str, types: dict[str, str]) -> Callable[[dict], bool] | None:
        for name in sorted(types, key=len, reverse=True):
            if not part.startswith(name):
                continue
            rest = part[len(name) :]
            op = next((o for o in _OPS if rest.startswith(o)), None)
            if op is None:
                continue
            return _test(name, types[name], op, rest[len(op) :])
        return None

    def internal_error(self) -> Reply:
        return _failure(500, "Internal Server Error", "An unexpected error occurred")


def _sort_key(text: str, kind: str) -> tuple:
    value = _typed(text, kind)
    return (value is not None, value if value is not None else 0)


def _test(name: str, kind: str, op: str, raw: str) -> Callable[[dict], bool]:
    def value(text: str) -> Any:
        typed = _typed(text, kind)
        return typed.lower() if isinstance(typed, str) else typed  # text compares ignoring case

    if op == "ISEMPTY":
        return lambda r: r[name] == ""
    if op == "ISNOTEMPTY":
        return lambda r: r[name] != ""
    if op in ("IN", "NOT IN"):
        wanted = {value(v) for v in raw.split(",")}
        return (lambda r: value(r[name]) in wanted) if op == "IN" else (
            lambda r: value(r[name]) not in wanted)  # fmt: skip
    if op in ("LIKE", "STARTSWITH"):
        needle = raw.lower()
        if op == "LIKE":
            return lambda r: needle in r[name].lower()
        return lambda r: r[name].lower().startswith(needle)
    if op == "BETWEEN":
        low_text, _, high_text = raw.partition("@")
        low, high = value(low_text), value(high_text)
        return lambda r: r[name] != "" and low <= value(r[name]) <= high
    target = value(raw)
    compare = {"=": lambda a: a == target, "!=": lambda a: a != target,
               ">": lambda a: a > target, ">=": lambda a: a >= target,
               "<": lambda a: a < target, "<=": lambda a: a <= target}[op]  # fmt: skip
    if op == "!=":
        return lambda r: compare(value(r[name]))
    return lambda r: r[name] != "" and compare(value(r[name]))
