"""Local HubSpot-compatible CRM v3 API server (objects, search, properties, batch create and
upsert: see hubspot_writes, OAuth) with deterministic data and injectable faults, for tests and
demos."""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
import polars as pl

from flow_assets.sandbox import hubspot_writes as writes
from flow_assets.sandbox.authorization_codes import AuthorizationCodes
from flow_assets.sandbox.faults import Fault
from flow_assets.sandbox.server import Reply, SandboxServer, json_body

log = logging.getLogger(__name__)

FAULT_KINDS = ("expire_token", "429", "503", "malformed")
LIST_MAX_LIMIT = 100  # GET /crm/v3/objects/{object}: limit at most 100
SEARCH_MAX_LIMIT = 200  # POST .../search: limit at most 200
SEARCH_RESULT_CAP = 10_000  # a search query pages through at most 10,000 results
TOKEN_SECONDS = 1800  # HubSpot OAuth access tokens live 30 minutes
_JSON = "application/json;charset=utf-8"
_DATETIME = "%Y-%m-%dT%H:%M:%S%.3fZ"

# Each object's properties and their HubSpot types (as GET /crm/v3/properties answers).
PROPERTIES: dict[str, dict[str, str]] = {
    "contacts": {
        "firstname": "string", "lastname": "string", "email": "string", "phone": "string",
        "lifecyclestage": "enumeration", "hs_email_optout": "bool", "date_of_birth": "date",
        "annual_income": "number", "createdate": "datetime", "lastmodifieddate": "datetime",
        "hs_lastmodifieddate": "datetime", "hs_object_id": "number",
    },
    "companies": {
        "name": "string", "domain": "string", "industry": "enumeration",
        "numberofemployees": "number", "annualrevenue": "number", "is_public": "bool",
        "founded_date": "date", "createdate": "datetime", "hs_lastmodifieddate": "datetime",
        "hs_object_id": "number",
    },
    "deals": {
        "dealname": "string", "amount": "number", "dealstage": "enumeration",
        "pipeline": "enumeration", "closedate": "datetime", "hs_is_closed_won": "bool",
        "contract_start_date": "date", "createdate": "datetime",
        "hs_lastmodifieddate": "datetime", "hs_object_id": "number", "external_id": "string",
    },
}  # fmt: skip
DEFAULT_PROPERTIES = {
    "contacts": ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
    "companies": ["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
    "deals": ["amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate",
              "hs_object_id", "pipeline"],
}  # fmt: skip
_FIELD_TYPES = {
    "string": "text", "enumeration": "select", "number": "number", "bool": "booleancheckbox",
    "date": "date", "datetime": "date",
}  # fmt: skip
_DTYPES: dict[str, pl.DataType] = {
    "number": pl.Float64(), "bool": pl.Boolean(), "date": pl.Date(),
    "datetime": pl.Datetime("us", "UTC"),
}  # fmt: skip
_ID_BASE = {"contacts": 1_000, "companies": 5_000_000, "deals": 9_000_000}
_OPTIONS = {
    "lifecyclestage": ["subscriber", "lead", "marketingqualifiedlead", "opportunity", "customer"],
    "industry": ["COMPUTER_SOFTWARE", "RETAIL", "HOSPITAL_HEALTH_CARE", "BANKING", "EDUCATION"],
    "dealstage": ["appointmentscheduled", "qualifiedtobuy", "contractsent", "closedwon",
                  "closedlost"],
    "pipeline": ["default", "enterprise"],
}  # fmt: skip
_OPERATORS = ("EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN",
              "HAS_PROPERTY", "NOT_HAS_PROPERTY")  # fmt: skip


class _BadRequest(Exception):
    pass


def build_frame(object_name: str, records: int, seed: int) -> pl.DataFrame:
    """The typed records of one object: id, archived and every property; the same seed and
    count give the same frame. Every ninth record shares its hs_lastmodifieddate with the
    record before it (ties are what the search re-query must handle), every 25th is archived."""
    rng = np.random.default_rng([seed, list(PROPERTIES).index(object_name)])
    n = records
    ids = np.arange(n, dtype=np.int64) + _ID_BASE[object_name]
    start = int(datetime(2023, 1, 1, tzinfo=UTC).timestamp() * 1000)
    created = start + rng.integers(0, 400 * 86_400_000, n)
    modified = created + rng.integers(1, 300 * 86_400_000, n)
    tie = np.arange(n) % 9 == 8
    modified[tie] = np.roll(modified, 1)[tie]
    modified = np.maximum(modified, created)
    created = np.minimum(created, modified)

    def stamps(ms: np.ndarray) -> pl.Series:
        return pl.Series(ms * 1000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")

    def pick(name: str) -> pl.Series:
        options = _OPTIONS[name]
        return pl.Series([options[i] for i in rng.integers(0, len(options), n)], dtype=pl.String)

    def nulls(series: pl.Series, every: int) -> pl.Series:
        blank = pl.Series(np.arange(len(series)) % every == every - 1)
        return series.zip_with(
            ~blank, pl.Series([None], dtype=series.dtype).extend_constant(None, len(series) - 1)
        )

    words = np.array(["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark"])
    index = pl.Series(np.arange(n))
    days = pl.Series(rng.integers(0, 20_000, n)).cast(pl.Date)
    columns: dict[str, pl.Series] = {
        "id": pl.Series(ids).cast(pl.String),
        "archived": pl.Series(np.arange(n) % 25 == 24),
        "createdate": stamps(created),
        "hs_lastmodifieddate": stamps(modified),
        "hs_object_id": pl.Series(ids).cast(pl.Float64),
    }
    name = pl.Series(words[rng.integers(0, len(words), n)])
    if object_name == "contacts":
        columns |= {
            "firstname": name,
            "lastname": "Person" + index.cast(pl.String),
            "email": "person" + index.cast(pl.String) + "@example.com",
            "phone": nulls("+1555" + (index + 1_000_000).cast(pl.String), 4),
            "lifecyclestage": pick("lifecyclestage"),
            "hs_email_optout": pl.Series(rng.integers(0, 2, n).astype(bool)),
            "date_of_birth": nulls(days, 5),
            "annual_income": nulls(pl.Series(rng.integers(2_000_000, 20_000_000, n) / 100), 6),
            "lastmodifieddate": stamps(modified),
        }
    elif object_name == "companies":
        columns |= {
            "name": name + " " + index.cast(pl.String),
            "domain": "company" + index.cast(pl.String) + ".example.com",
            "industry": nulls(pick("industry"), 7),
            "numberofemployees": pl.Series(rng.integers(1, 50_000, n)).cast(pl.Float64),
            "annualrevenue": nulls(pl.Series(rng.integers(10_000, 10**9, n) / 10), 5),
            "is_public": pl.Series(rng.integers(0, 2, n).astype(bool)),
            "founded_date": days,
        }
    else:
        stage = pick("dealstage")
        columns |= {
            "dealname": name + " deal " + index.cast(pl.String),
            "amount": nulls(pl.Series(rng.integers(100, 50_000_000, n) / 100), 8),
            "dealstage": stage,
            "pipeline": pick("pipeline"),
            "closedate": nulls(stamps(modified + rng.integers(0, 90 * 86_400_000, n)), 3),
            "hs_is_closed_won": stage == "closedwon",
            "contract_start_date": nulls(days, 4),
            "external_id": pl.repeat(None, n, dtype=pl.String, eager=True),  # unique; for upserts
        }
    order = ["id", "archived", *PROPERTIES[object_name]]
    return pl.DataFrame(columns).select(order)


def _wire(frame: pl.DataFrame, object_name: str) -> pl.DataFrame:
    """Every property as the text HubSpot writes: numbers without a trailing .0, booleans as
    true/false, dates as YYYY-MM-DD, datetimes as ISO 8601 with milliseconds and Z."""
    exprs = []
    for name, kind in PROPERTIES[object_name].items():
        col = pl.col(name)
        if kind == "number":
            col = col.cast(pl.String).str.replace(r"\.0$", "")
        elif kind == "bool":
            col = pl.when(col).then(pl.lit("true")).otherwise(pl.lit("false"))
        elif kind == "datetime":
            col = col.dt.to_string(_DATETIME)
        elif kind == "date":
            col = col.dt.to_string("%Y-%m-%d")
        exprs.append(col.alias(name))
    stamps = frame.select(
        pl.col("createdate").dt.to_string(_DATETIME).alias("createdAt"),
        pl.col("hs_lastmodifieddate").dt.to_string(_DATETIME).alias("updatedAt"),
    )
    return pl.concat([frame.select("id", "archived", *exprs), stamps], how="horizontal")


class HubSpotSandbox(SandboxServer):
    """A HubSpot CRM API stand-in on 127.0.0.1.

    contacts and deals hold `records` records each, companies records // 5 (at least 10).
    Accepts the private-app token `access_token` and OAuth access tokens issued by
    POST /oauth/v1/token for `client_id` / `client_secret` and a refresh token from
    `refresh_token` or issue_refresh_token().
    """

    product = "HubSpot"
    content_type = _JSON
    fault_kinds = FAULT_KINDS

    def __init__(
        self,
        port: int = 0,
        records: int = 1000,
        seed: int = 7,
        access_token: str = "pat-na1-flowbridge-sandbox",
        client_id: str = "flowbridge-sandbox",
        client_secret: str = "sandbox-secret",
        refresh_token: str = "na1-sandbox-refresh-token",
        token_seconds: int = TOKEN_SECONDS,
        quiet: bool = True,
    ) -> None:
        if records < 0:
            raise ValueError("records must be 0 or more")
        super().__init__(port, quiet=quiet)
        self.records = records
        self.seed = seed
        self.access_token = access_token
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.token_seconds = token_seconds
        self._lock = threading.Lock()
        self._frames: dict[str, tuple[pl.DataFrame, pl.DataFrame]] = {}
        self._oauth_tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self._expired: set[str] = set()
        self._refresh_tokens = {refresh_token}
        self._stats: Counter[str] = Counter()
        self._correlation = 0

    # --- data --------------------------------------------------------------------

    def frame(self, object_name: str) -> pl.DataFrame:
        """The typed truth behind `object_name` (contacts, companies or deals), archived
        records included (archived = true)."""
        return self._load(object_name)[0]

    def _load(self, object_name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        if object_name not in PROPERTIES:
            raise KeyError(f"unknown object {object_name!r}; known: {sorted(PROPERTIES)}")
        with self._lock:
            if object_name not in self._frames:
                count = max(10, self.records // 5) if object_name == "companies" else self.records
                typed = build_frame(object_name, count, self.seed)
                self._frames[object_name] = (typed, _wire(typed, object_name))
            return self._frames[object_name]

    # --- credentials -------------------------------------------------------------

    def issue_access_token(self) -> str:
        token = "CN" + secrets.token_urlsafe(96)
        with self._lock:
            self._oauth_tokens[token] = time.monotonic() + self.token_seconds
        return token

    def issue_refresh_token(self) -> str:
        token = "na1-" + str(uuid.uuid4())
        with self._lock:
            self._refresh_tokens.add(token)
        return token

    def expire_tokens(self) -> None:
        """End every OAuth access token issued so far (refresh tokens stay valid)."""
        with self._lock:
            self._expired |= set(self._oauth_tokens)
            self._oauth_tokens.clear()

    @cached_property
    def authorization_codes(self) -> AuthorizationCodes:
        """GET /oauth/authorize's codes (app.hubspot.com's page, "Allow" already clicked)."""
        return AuthorizationCodes(self.client_id)

    # --- faults and stats --------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Requests received per kind (token, list, search, properties, ...)."""
        with self._lock:
            return dict(self._stats)

    # --- request handling --------------------------------------------------------

    def _error(self, status: int, message: str, category: str, **extra: Any) -> Reply:
        """HubSpot's error body: status, message, correlationId and category."""
        with self._lock:
            self._correlation += 1
            correlation = str(uuid.UUID(int=self._correlation))
        body = {"status": "error", "message": message, "correlationId": correlation}
        body |= {"category": category} if category else {}
        return Reply(status, json_body(body | extra))

    def before_start(self) -> None:
        for name in PROPERTIES:
            self._load(name)

    def internal_error(self) -> Reply:
        return self._error(500, "internal error", "")

    def respond(self, method: str, raw: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = urlsplit(raw)
        path = parts.path.rstrip("/")
        if path == "/oauth/v1/token":
            self._count("token")
            return self._token(method, headers, body)
        if path == "/oauth/authorize":
            self._count("authorize")
            return Reply(*self.authorization_codes.authorize(method, parts.query))
        target = path + (f"?{parts.query}" if parts.query else "")
        fault = self.faults.take(target)
        if fault is not None and fault.kind != "malformed":
            self._count(f"fault_{fault.kind}")
            return self._fault_reply(fault)
        denied = self._authorize(headers)
        if denied is not None:
            return denied
        try:
            reply = self._route(method, path, parse_qs(parts.query), body)
        except _BadRequest as exc:
            reply = self._error(400, str(exc), "VALIDATION_ERROR")
        if fault is not None:  # malformed: a 200 whose JSON stops half way
            self._count("fault_malformed")
            return Reply(200, reply.body[: max(1, len(reply.body) // 2)])
        return reply

    def _count(self, kind: str) -> None:
        with self._lock:
            self._stats[kind] += 1

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "expire_token":
            self.expire_tokens()
            return self._error(
                401, "The OAuth token used to make this call expired 0 minute(s) ago.",
                "EXPIRED_AUTHENTICATION",
            )  # fmt: skip
        retry = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        if fault.kind == "503":
            reply = self._error(503, "Service Unavailable", "")
            reply.headers |= retry
            return reply
        reply = self._error(
            429, "You have reached your secondly limit.", "", errorType="RATE_LIMIT",
            policyName="SECONDLY", requestId=str(uuid.UUID(int=self._correlation + 1)),
        )  # fmt: skip
        reply.headers |= retry | {
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": "100",
            "X-HubSpot-RateLimit-Remaining": "0",
        }
        return reply

    def _authorize(self, headers: Mapping[str, str]) -> Reply | None:
        value = headers.get("Authorization") or ""
        token = value[7:] if value.startswith("Bearer ") else ""
        if token and token == self.access_token:
            return None
        with self._lock:
            expiry = self._oauth_tokens.get(token)
            if expiry is not None and expiry <= time.monotonic():
                del self._oauth_tokens[token]
                self._expired.add(token)
                expiry = None
            expired = token in self._expired
        if expiry is not None:
            return None
        if expired:
            return self._error(
                401, "The OAuth token used to make this call expired 0 minute(s) ago.",
                "EXPIRED_AUTHENTICATION",
            )  # fmt: skip
        return self._error(
            401,
            "Authentication credentials not found. This API supports OAuth 2.0 authentication",
            "INVALID_AUTHENTICATION",
        )

    def _token(self, method: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """POST /oauth/v1/token, form-encoded: grant_type=refresh_token with client_id,
        client_secret and refresh_token; answers a new access token and its lifetime."""
        if method != "POST":
            return self._error(405, "Method not allowed", "")
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") not in ("refresh_token", "authorization_code"):
            return Reply(400, json_body({"status": "BAD_GRANT_TYPE",
                                      "message": "missing or unknown grant type"}))  # fmt: skip
        if form.get("client_id") != self.client_id:
            return Reply(400, json_body({"status": "BAD_CLIENT_ID",
                                      "message": "missing or unknown client id"}))  # fmt: skip
        if form.get("client_secret") != self.client_secret:
            return Reply(400, json_body({"status": "BAD_CLIENT_SECRET",
                                      "message": "missing or invalid client secret"}))  # fmt: skip
        if form["grant_type"] == "authorization_code":
            return self._code_grant(form)
        with self._lock:
            known = form.get("refresh_token") in self._refresh_tokens
        if not known:
            return Reply(400, json_body({"status": "BAD_REFRESH_TOKEN",
                                      "message": "missing or unknown refresh token"}))  # fmt: skip
        answer = {
            "token_type": "bearer",
            "refresh_token": form["refresh_token"],
            "access_token": self.issue_access_token(),
            "expires_in": self.token_seconds,
        }
        return Reply(200, json_body(answer), {"Cache-Control": "no-store"})

    def _code_grant(self, form: Mapping[str, str]) -> Reply:
        """grant_type=authorization_code: code, redirect_uri, code_verifier; a new refresh
        token with the access token."""
        refusal = self.authorization_codes.redeem(
            form.get("code"), form.get("client_id"), form.get("redirect_uri"),
            form.get("code_verifier"),
        )  # fmt: skip
        if refusal is not None:
            status = "BAD_REDIRECT_URI" if refusal.reason == "redirect_uri" else "BAD_AUTH_CODE"
            return Reply(400, json_body({"status": status, "message": refusal.description}))
        answer = {"token_type": "bearer", "refresh_token": self.issue_refresh_token(),
                  "access_token": self.issue_access_token(),
                  "expires_in": self.token_seconds}  # fmt: skip
        return Reply(200, json_body(answer), {"Cache-Control": "no-store"})

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        m = re.fullmatch(r"/crm/v3/properties/([^/]+)", path)
        if m and method == "GET":
            self._count("properties")
            return self._properties(m[1])
        m = re.fullmatch(r"/crm/v3/objects/([^/]+)/search", path)
        if m and method == "POST":
            self._count("search")
            return self._search(m[1], body)
        m = re.fullmatch(r"/crm/v3/objects/([^/]+)", path)
        if m and method == "GET":
            self._count("list")
            return self._list(m[1], query)
        m = re.fullmatch(r"/crm/v3/objects/([^/]+)/batch/(create|upsert)", path)
        if m and method == "POST":
            self._count(f"batch_{m[2]}")
            return writes.respond(self, m[1], m[2], body)
        self._count("not_found")
        return self._error(404, f"No route for {method} {path}", "OBJECT_NOT_FOUND")

    def _object(self, name: str) -> str:
        if name not in PROPERTIES:
            raise _BadRequest(f"Unable to infer object type from: {name}")
        return name

    def _properties(self, object_name: str) -> Reply:
        if object_name not in PROPERTIES:
            return self._error(400, f"Unable to infer object type from: {object_name}",
                               "VALIDATION_ERROR")  # fmt: skip
        results = []
        for order, (name, kind) in enumerate(PROPERTIES[object_name].items()):
            options = [
                {"label": v.title(), "value": v, "displayOrder": i, "hidden": False}
                for i, v in enumerate(_OPTIONS.get(name, []))
            ]
            if kind == "bool":
                options = [{"label": "Yes", "value": "true", "displayOrder": 0, "hidden": False},
                           {"label": "No", "value": "false", "displayOrder": 1, "hidden": False}]  # fmt: skip
            results.append({
                "name": name, "label": name.replace("_", " ").title(), "type": kind,
                "fieldType": _FIELD_TYPES[kind], "description": "", "groupName": "info",
                "options": options, "displayOrder": order,
                "calculated": name in writes.CALCULATED, "externalOptions": False,
                "hasUniqueValue": name in writes.UNIQUE, "hidden": False,
                "hubspotDefined": name not in writes.CUSTOM, "formField": False,
                "modificationMetadata": {"archivable": True, "readOnlyDefinition": True,
                                         "readOnlyValue": writes.read_only(name)},
                "archived": False,
            })  # fmt: skip
        return Reply(200, json_body({"results": results}))

    def _records_json(self, object_name: str, rows: pl.DataFrame, names: list[str]) -> bytes:
        props = [n for n in names if n in PROPERTIES[object_name]]
        page = rows.select(
            "id",
            pl.struct(props).alias("properties") if props else pl.lit({}).alias("properties"),
            "createdAt", "updatedAt", "archived",
        )  # fmt: skip
        return page.write_json().encode()

    def _requested(self, object_name: str, names: list[str]) -> list[str]:
        # Unknown properties are left out of the answer, as HubSpot does.
        known = PROPERTIES[object_name]
        return [n for n in dict.fromkeys(names) if n in known] or DEFAULT_PROPERTIES[object_name]

    def _list(self, object_name: str, query: dict[str, list[str]]) -> Reply:
        """GET /crm/v3/objects/{object}?limit&after&properties&archived, in id order."""
        object_name = self._object(object_name)
        limit = _int(query.get("limit", ["10"])[0], "limit")
        if not 1 <= limit <= LIST_MAX_LIMIT:
            raise _BadRequest(f"limit must be between 1 and {LIST_MAX_LIMIT}")
        after = query.get("after", [""])[0]
        start = _int(after, "after") if after else 0
        archived = query.get("archived", ["false"])[0].lower() == "true"
        names = [p for v in query.get("properties", []) for p in v.split(",") if p]
        wire = self._load(object_name)[1].filter(pl.col("archived") == archived)
        rows = wire.slice(start, limit)
        body = b'{"results":' + self._records_json(
            object_name, rows, self._requested(object_name, names)
        )
        end = start + rows.height
        if end < wire.height:
            params = {"limit": limit, "after": end, "archived": str(archived).lower()}
            if names:
                params["properties"] = ",".join(names)
            link = f"{self.url}/crm/v3/objects/{object_name}?{urlencode(params)}"
            body += b',"paging":' + json_body({"next": {"after": str(end), "link": link}})
        return Reply(200, body + b"}")

    def _search(self, object_name: str, body: bytes) -> Reply:
        """POST /crm/v3/objects/{object}/search: filterGroups (OR of ANDed filters), one
        sort, properties, limit (at most 200) and after; never archived records; at most
        10,000 results per query (paging past them answers 400)."""
        object_name = self._object(object_name)
        try:
            spec = json.loads(body or b"{}")
        except ValueError:
            raise _BadRequest("Invalid input JSON on line 1") from None
        if not isinstance(spec, dict):
            raise _BadRequest("the search body must be a JSON object")
        limit = _int(spec.get("limit", 10), "limit")
        if not 1 <= limit <= SEARCH_MAX_LIMIT:
            raise _BadRequest(f"limit must be between 1 and {SEARCH_MAX_LIMIT}")
        after = _int(spec.get("after") or 0, "after")
        if after >= SEARCH_RESULT_CAP:
            raise _BadRequest(
                f"paging beyond {SEARCH_RESULT_CAP} results is not supported by search; "
                "narrow the query instead"
            )
        typed = self._load(object_name)[0]
        groups = spec.get("filterGroups") or []
        if len(groups) > 5 or sum(len(g.get("filters") or []) for g in groups) > 25:
            raise _BadRequest("at most 5 filterGroups and 25 filters in all")
        keep = ~pl.col("archived")
        if groups:
            ors = [self._group(object_name, g) for g in groups]
            keep = keep & pl.any_horizontal(ors)
        sorts = spec.get("sorts") or []
        if len(sorts) > 1:
            raise _BadRequest("only one sort is supported")
        order, descending = ["hs_object_id"], [False]
        for sort in sorts:
            if isinstance(sort, str):  # the SDKs' form: a property name, ascending
                sort = {"propertyName": sort}
            prop = sort.get("propertyName") if isinstance(sort, dict) else None
            if prop not in PROPERTIES[object_name]:
                raise _BadRequest(f"cannot sort by unknown property {prop!r}")
            order = [prop, "hs_object_id"]
            down = sort.get("direction", "ASCENDING") == "DESCENDING"
            descending = [down, down]
        rows = (
            typed.with_row_index("_row")
            .filter(keep)
            .sort(order, descending=descending, nulls_last=True)["_row"]
        )
        total = rows.len()
        end = min(after + limit, total, SEARCH_RESULT_CAP)
        page_rows = rows.slice(after, max(0, end - after))
        wire = self._load(object_name)[1].select(pl.all().gather(page_rows))
        names = spec.get("properties") or []
        out = b'{"total":' + str(total).encode() + b',"results":'
        out += self._records_json(object_name, wire, self._requested(object_name, names))
        if end < total:
            out += b',"paging":' + json_body({"next": {"after": str(end), "link": f"?after={end}"}})
        return Reply(200, out + b"}")

    def _group(self, object_name: str, group: Any) -> pl.Expr:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not filters:
            raise _BadRequest("each filterGroup needs at least one filter")
        if len(filters) > 10:
            raise _BadRequest("at most 10 filters per filterGroup")
        return pl.all_horizontal([self._filter(object_name, f) for f in filters])

    def _filter(self, object_name: str, spec: Any) -> pl.Expr:
        prop = spec.get("propertyName") if isinstance(spec, dict) else None
        kind = PROPERTIES[object_name].get(prop or "")
        if kind is None:
            raise _BadRequest(f"There was a problem with the request: unknown property {prop!r}")
        op = spec.get("operator", "EQ")
        if op not in _OPERATORS:
            raise _BadRequest(f"operator {op!r} is not supported here; use one of {_OPERATORS}")
        col = pl.col(prop)
        if op == "HAS_PROPERTY":
            return col.is_not_null()
        if op == "NOT_HAS_PROPERTY":
            return col.is_null()
        if op in ("IN", "NOT_IN"):
            values = [_value(v, kind) for v in spec.get("values") or []]
            if kind == "string" or kind == "enumeration":
                values = [str(v).lower() for v in values]
                col = col.str.to_lowercase()
            hit = col.is_in(values)
            return hit.fill_null(False) if op == "IN" else ~hit.fill_null(False)
        value = _value(spec.get("value"), kind)
        if kind in ("string", "enumeration"):  # text comparisons ignore case in HubSpot
            col, value = col.str.to_lowercase(), str(value).lower()
        if op == "BETWEEN":
            high = _value(spec.get("highValue"), kind)
            if kind in ("string", "enumeration"):
                high = str(high).lower()
            return col.is_between(value, high).fill_null(False)
        expr = {"EQ": col == value, "NEQ": col != value, "LT": col < value, "LTE": col <= value,
                "GT": col > value, "GTE": col >= value}[op]  # fmt: skip
        # NEQ also matches records without a value.
        return expr.fill_null(op == "NEQ")


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _BadRequest(f"{name} must be an integer") from None


def _value(value: Any, kind: str) -> Any:
    """A filter value as the property's type: datetimes and dates as epoch milliseconds or
    ISO 8601, numbers as numbers, booleans as true/false."""
    if value is None:
        raise _BadRequest("a filter needs a value")
    text = str(value)
    try:
        if kind in ("datetime", "date"):
            if re.fullmatch(r"-?\d+", text):
                moment = datetime.fromtimestamp(int(text) / 1000, UTC)
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            return moment.date() if kind == "date" else moment
        if kind == "number":
            return float(text)
        if kind == "bool":
            return text.lower() == "true"
    except ValueError:
        raise _BadRequest(f"{text!r} is not a valid {kind} value") from None
    return text
