"""Local Salesforce-compatible REST API server: OAuth token endpoint, describe, SOQL
query paging and injectable faults, for demos, tests and benchmarks."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import signal
import ssl
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import polars as pl

from flow_assets.sandbox import changes
from flow_assets.sandbox import salesforce_bulk as bulk
from flow_assets.sandbox import salesforce_data as data
from flow_assets.sandbox import salesforce_writes as writes
from flow_assets.sandbox.authorization_codes import AuthorizationCodes
from flow_assets.sandbox.faults import Fault
from flow_assets.sandbox.page_cache import LruCache
from flow_assets.sandbox.server import Reply, SandboxServer, json_body
from flow_assets.sandbox.soql import Query, SoqlError, compile_soql, select_rows

log = logging.getLogger(__name__)

SANDBOX_USERNAME = "sandbox@flowbridge.local"
SANDBOX_PASSWORD = "sandbox-password"
FAULT_KINDS = ("429", "503", "reset", "expire_token", "malformed", "limit_exceeded")
REQUEST_KINDS = (
    "token",
    "versions",
    "resources",
    "describe_global",
    "sobject",
    "describe",
    "record",
    "query",
    "query_all",
    "query_more",
    "limits",
    "updated",
    "deleted",
    "collections",
    "collections_upsert",
    *bulk.KINDS,  # Bulk API 2.0 ingest: bulk_jobs (POST: a job created), bulk_job, ...
    "not_found",
)

DEFAULT_BATCH_SIZE = 2000
MIN_BATCH_SIZE = 200  # Sforce-Query-Options batchSize range, as documented
SESSION_SECONDS = 2 * 3600  # Salesforce's default session timeout
LOCATOR_IDLE_SECONDS = 15 * 60  # query locators expire after 15 idle minutes
MAX_OPEN_LOCATORS = 256
CACHED_QUERIES = 8  # row selections kept when the page cache is on
DAILY_API_REQUESTS = 5_000_000

_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.3f+0000"
_JSON = "application/json;charset=UTF-8"
_VERSION = r"v\d+\.\d+|latest"
_ROUTES = [
    (re.compile(p), kind)
    for p, kind in (
        (r"/services/oauth2/token/?", "token"),
        (r"/services/oauth2/authorize/?", "authorize"),
        (r"/services/data/?", "versions"),
        (rf"/services/data/(?P<v>{_VERSION})/?", "resources"),
        (rf"/services/data/(?P<v>{_VERSION})/sobjects/?", "describe_global"),
        (rf"/services/data/(?P<v>{_VERSION})/sobjects/(?P<obj>[^/]+)/?", "sobject"),
        (rf"/services/data/(?P<v>{_VERSION})/sobjects/(?P<obj>[^/]+)/describe/?", "describe"),
        (rf"/services/data/(?P<v>{_VERSION})/sobjects/(?P<obj>[^/]+)/updated/?", "updated"),
        (rf"/services/data/(?P<v>{_VERSION})/sobjects/(?P<obj>[^/]+)/deleted/?", "deleted"),
        (rf"/services/data/(?P<v>{_VERSION})/sobjects/(?P<obj>[^/]+)/(?P<id>[^/]+)/?", "record"),
        (rf"/services/data/(?P<v>{_VERSION})/query/?", "query"),
        (rf"/services/data/(?P<v>{_VERSION})/queryAll/?", "query_all"),
        (rf"/services/data/(?P<v>{_VERSION})/(?:query|queryAll)/(?P<loc>[^/]+)/?", "query_more"),
        (rf"/services/data/(?P<v>{_VERSION})/limits/?", "limits"),
        (rf"/services/data/(?P<v>{_VERSION})/composite/sobjects/?", "collections"),
        (
            rf"/services/data/(?P<v>{_VERSION})/composite/sobjects/(?P<obj>[^/]+)/(?P<ext>[^/]+)/?",
            "collections_upsert",
        ),
        *bulk.ROUTES,
        (rf"/services/data/(?P<v>{_VERSION})/.*", "not_found"),
    )
]
_SEASONS = ("Summer", "Winter", "Spring")  # API 31.0 was Summer '14; three releases a year


@dataclass
class _Cursor:
    """An open query result: the answering rows, kept under a query locator."""

    sobject: str
    fields: list[str]
    rows: pl.Series | None  # row positions in answer order; None = all rows in order
    total: int
    batch_size: int
    version: str
    touched: float = 0.0
    # The query's identity (normalised SOQL, queryAll, API version, fields): with a page's
    # start and size it names that page's records; None = never cached.
    key: tuple[Any, ...] | None = None


def _errors(status: int, code: str, message: str, **headers: str) -> Reply:
    return Reply(status, json_body([{"message": message, "errorCode": code}]), headers)


def _oauth_error(error: str, description: str) -> Reply:
    return Reply(400, json_body({"error": error, "error_description": description}))


def _session_error() -> Reply:
    return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")


def _not_found() -> Reply:
    return _errors(404, "NOT_FOUND", "The requested resource does not exist")


def _wire(spec: data.ObjectSpec, typed: pl.DataFrame) -> pl.DataFrame:
    """The frame with its datetimes already formatted the way Salesforce writes them."""
    stamps = [f.name for f in spec.fields if f.type == "datetime"]
    return typed.with_columns(pl.col(stamps).dt.to_string(_DATETIME_FORMAT))


def _release_label(version: int) -> str:
    k = version - 31
    return f"{_SEASONS[k % 3]} '{14 + (k + 2) // 3:02d}"


class SalesforceSandbox(SandboxServer):
    """A Salesforce REST API stand-in on 127.0.0.1, with deterministic data.

    Opportunity holds `records` rows, Account records // 10 and Contact records // 2
    (at least 10 each). The same seed and record count give byte-identical answers.

    `page_cache_mb` > 0 keeps the serialised records of query pages (up to that many MB,
    least recently used evicted) and the rows of the last few queries, so repeating a
    query costs the sandbox little; answers are the same bytes either way. The data changes
    only through `change_records` (or POST /__sandbox/changes) and the sObject Collections
    writes (insert, update, upsert by external id, delete: see salesforce_writes) and Bulk API
    2.0 ingest jobs (`bulk`, see salesforce_bulk), each of which clears both caches.
    """

    product = "Salesforce"
    fault_kinds = FAULT_KINDS

    def __init__(
        self,
        port: int = 0,
        records: int = 1000,
        seed: int = 7,
        client_id: str = "flowbridge-sandbox",
        client_secret: str = "sandbox-secret",
        api_version: str = "59.0",
        ssl_context: ssl.SSLContext | None = None,
        quiet: bool = True,
        page_cache_mb: int = 0,
    ) -> None:
        if not re.fullmatch(r"\d+\.\d", api_version):
            raise ValueError(f"api_version must look like 59.0, not {api_version!r}")
        if not 0 <= records <= data.MAX_RECORDS:
            raise ValueError(f"records must be between 0 and {data.MAX_RECORDS}")
        if not isinstance(page_cache_mb, int) or page_cache_mb < 0:
            raise ValueError("page_cache_mb must be a non-negative integer (0 = no cache)")
        super().__init__(port, ssl_context, quiet)
        self.records = records
        self.seed = seed
        self.client_id = client_id
        self.client_secret = client_secret
        self.api_version = api_version
        self._lock = threading.Lock()
        self._frames: dict[str, tuple[pl.DataFrame, pl.DataFrame]] = {}
        self._frame_lock = threading.Lock()
        self._schemas = {name: spec.field_types() for name, spec in data.OBJECTS.items()}
        self._objects = {name.lower(): spec for name, spec in data.OBJECTS.items()}
        self._access_tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self._refresh_tokens: set[str] = set()
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._locator_count = 0
        self._stats: Counter[str] = Counter()
        self.bulk = bulk.IngestJobs(self)  # Bulk API 2.0 ingest jobs (see salesforce_bulk)
        self._api_usage = 0
        self._page_cache: LruCache | None = None
        self._query_cache: LruCache | None = None
        if page_cache_mb:
            self._page_cache = LruCache(max_bytes=page_cache_mb * 1024 * 1024)
            self._query_cache = LruCache(max_entries=CACHED_QUERIES)

    # --- data --------------------------------------------------------------------

    def frame(self, sobject: str) -> pl.DataFrame:
        """The typed truth behind `sobject` (Account, Contact or Opportunity)."""
        return self._load(sobject)[0]

    def _load(self, sobject: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The typed frame and its wire twin, whose datetimes are already formatted the
        way Salesforce writes them; formatting once here keeps it out of every page."""
        spec = self._objects.get(sobject.lower())
        if spec is None:
            raise KeyError(f"unknown sObject {sobject!r}; known: {sorted(data.OBJECTS)}")
        with self._frame_lock:
            if spec.name not in self._frames:
                typed = data.build_frame(spec.name, self.records, self.seed)
                self._frames[spec.name] = (typed, _wire(spec, typed))
            return self._frames[spec.name]

    def replace_frame(self, sobject: str, typed: pl.DataFrame) -> None:
        """Make `typed` the truth behind `sobject` (a write through the API); the caches,
        which hold the old answers, are cleared."""
        spec = self._objects[sobject.lower()]
        with self._frame_lock:
            self._frames[spec.name] = (typed, _wire(spec, typed))
        for cache in (self._page_cache, self._query_cache):
            if cache is not None:
                cache.clear()

    def change_records(
        self,
        sobject: str = "Opportunity",
        count: int = 1,
        seed: int = 0,
        delete: int = 0,
        at: datetime | None = None,
    ) -> changes.ChangeSet:
        """Update `count` live records and delete `delete` others, as users would (see
        changes.apply_changes), now or `at`; the caches, which hold the old answers, are
        cleared."""
        spec = self._objects.get(sobject.lower())
        if spec is None:
            raise KeyError(f"unknown sObject {sobject!r}; known: {sorted(data.OBJECTS)}")
        self._load(spec.name)  # outside the lock: _load takes it
        with self._frame_lock:
            typed, change = changes.apply_changes(
                self._frames[spec.name][0], count, seed, delete, at or datetime.now(UTC)
            )
            self._frames[spec.name] = (typed, _wire(spec, typed))
        for cache in (self._page_cache, self._query_cache):
            if cache is not None:
                cache.clear()
        return change

    # --- credentials -------------------------------------------------------------

    def issue_access_token(self) -> str:
        """A valid access token, as the token endpoint would issue."""
        token = f"{data.ORG_ID[:15]}!{secrets.token_urlsafe(72)}"
        with self._lock:
            self._access_tokens[token] = time.monotonic() + SESSION_SECONDS
        return token

    def issue_refresh_token(self) -> str:
        """A valid refresh token for the refresh_token grant."""
        token = "5Aep" + secrets.token_urlsafe(64)
        with self._lock:
            self._refresh_tokens.add(token)
        return token

    def expire_tokens(self) -> None:
        """Invalidate every access token issued so far (refresh tokens stay valid)."""
        with self._lock:
            self._access_tokens.clear()

    @cached_property
    def authorization_codes(self) -> AuthorizationCodes:
        """The web server flow's codes (GET /services/oauth2/authorize, "Allow" clicked)."""
        return AuthorizationCodes(self.client_id)

    # --- faults and stats --------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Requests received per kind (token, query, query_more, describe, ...), their
        total, faults served per fault kind, and the page cache's hits, misses and bytes."""
        with self._lock:
            counts: dict[str, Any] = {kind: self._stats[kind] for kind in REQUEST_KINDS}
            counts["requests"] = sum(self._stats.values())
            counts["faults"] = {kind: self.faults.served[kind] for kind in FAULT_KINDS}
            counts["faults_served"] = sum(self.faults.served.values())
        cache = self._page_cache
        counts["page_cache_hits"] = cache.hits if cache else 0
        counts["page_cache_misses"] = cache.misses if cache else 0
        counts["page_cache_bytes"] = cache.bytes if cache else 0
        return counts

    def reset_stats(self) -> None:
        """Zero the counters (the caches keep their contents)."""
        with self._lock:
            self._stats.clear()
            self.faults.served.clear()
        if self._page_cache is not None:
            self._page_cache.reset_counts()

    # --- request handling --------------------------------------------------------

    def before_start(self) -> None:
        self._load("Opportunity")  # so the first query is not also the data build

    def internal_error(self) -> Reply:
        return _errors(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred.")

    def respond(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = urlsplit(raw_path)
        path = parts.path
        if path.startswith("/__sandbox/"):
            return self._admin(method, path, body)
        kind, match = "not_found", None
        for pattern, route_kind in _ROUTES:
            match = pattern.fullmatch(path)
            if match:
                kind = route_kind
                break
        with self._lock:
            self._stats[kind] += 1
        target = path.rstrip("/") + (f"?{parts.query}" if parts.query else "")
        fault = self.faults.take(target)
        if fault is not None and fault.kind != "malformed":
            return self._fault_reply(fault)
        reply = self._route(kind, match, method, parts.query, headers, body)
        if fault is not None:  # malformed: a 200 whose JSON stops half way
            cut = reply.body[: max(1, len(reply.body) // 2)] if reply.body else b'{"records":['
            return Reply(200, cut, {"Content-Type": _JSON})
        return reply

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "reset":
            return Reply(0, reset=True)
        if fault.kind == "expire_token":
            self.expire_tokens()
            return _session_error()
        if fault.kind == "limit_exceeded":
            return _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        retry = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        if fault.kind == "503":
            return _errors(503, "SERVER_UNAVAILABLE", "Server unavailable", **retry)
        seconds = "1" if fault.retry_after is None else f"{fault.retry_after:g}"
        return _errors(
            429,
            "REQUEST_LIMIT_EXCEEDED",
            f"Too many requests. Retry after {seconds} seconds.",
            **{"Retry-After": seconds},
        )

    def _route(
        self,
        kind: str,
        match: re.Match[str] | None,
        method: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        if kind == "token":
            if method != "POST":
                return _oauth_error("invalid_request", "must use HTTP POST")
            return self._token(query, headers, body)
        if kind == "authorize":
            return Reply(*self.authorization_codes.authorize(method, query))
        if kind == "not_found" and match is None:
            return _not_found()
        if method not in ("GET", "HEAD") and kind not in (*writes.KINDS, *bulk.KINDS):
            return _errors(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{method}' not allowed. Allowed are GET,HEAD",
            )
        if kind == "versions":
            return Reply(200, json_body(self._versions()))
        if not self._authorized(headers):
            return _session_error()
        assert match is not None
        with self._lock:
            self._api_usage += 1
            usage = f"api-usage={self._api_usage}/{DAILY_API_REQUESTS}"
        version = match["v"]
        version = self.api_version if version == "latest" else version[1:]
        if kind in writes.KINDS:
            reply = writes.respond(self, kind, match, method, parse_qs(query), body)
        elif kind in bulk.KINDS:
            reply = self.bulk.respond(kind, match, method, headers, body)
        else:
            reply = self._data(kind, match, version, parse_qs(query), headers)
        reply.headers["Sforce-Limit-Info"] = usage
        return reply

    def _data(
        self,
        kind: str,
        match: re.Match[str],
        version: str,
        params: dict[str, list[str]],
        headers: Mapping[str, str],
    ) -> Reply:
        if kind == "resources":
            base = f"/services/data/v{version}"
            names = ("limits", "query", "queryAll", "sobjects")
            return Reply(200, json_body({name: f"{base}/{name}" for name in names}))
        if kind == "describe_global":
            return Reply(200, json_body(self._describe_global(version)))
        if kind == "limits":
            return Reply(200, json_body(self._limits()))
        if kind in ("sobject", "describe", "record", "updated", "deleted"):
            spec = self._objects.get(unquote(match["obj"]).lower())
            if spec is None:
                return _not_found()
            if kind == "sobject":
                entry = data.global_entry(spec, version)
                return Reply(200, json_body({"objectDescribe": entry, "recentItems": []}))
            if kind == "describe":
                return Reply(200, json_body(data.describe(spec, version)))
            if kind in ("updated", "deleted"):
                status, answer = changes.replication(
                    kind, self.frame(spec.name), params, datetime.now(UTC)
                )
                return Reply(status, json_body(answer))
            return self._record(spec, unquote(match["id"]), params, version)
        if kind in ("query", "query_all"):
            return self._query(params, headers, version, include_deleted=kind == "query_all")
        if kind == "query_more":
            return self._query_more(unquote(match["loc"]), headers)
        return _not_found()

    # --- auth ----------------------------------------------------------------------

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        scheme, _, token = (headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return False
        with self._lock:
            expiry = self._access_tokens.get(token.strip())
            if expiry is not None and expiry < time.monotonic():
                del self._access_tokens[token.strip()]
                return False
            return expiry is not None

    def _token(self, query: str, headers: Mapping[str, str], body: bytes) -> Reply:
        # Salesforce reads the parameters from the form body or the query string.
        params = {k: v[0] for k, v in parse_qs(query).items()}
        params |= {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        client_id, client_secret = params.get("client_id"), params.get("client_secret")
        scheme, _, credentials = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic" and credentials:
            try:
                decoded = base64.b64decode(credentials.strip()).decode()
            except ValueError:
                return _oauth_error("invalid_client", "invalid client credentials")
            basic_id, _, basic_secret = decoded.partition(":")
            client_id, client_secret = unquote(basic_id), unquote(basic_secret)
        grant = params.get("grant_type")
        if grant not in ("client_credentials", "password", "refresh_token", "authorization_code"):
            return _oauth_error("unsupported_grant_type", "grant type not supported")
        if client_id != self.client_id:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if client_secret is None or not hmac.compare_digest(client_secret, self.client_secret):
            return _oauth_error("invalid_client", "invalid client credentials")
        if grant == "authorization_code":  # the web server flow; PKCE when it was asked for
            refusal = self.authorization_codes.redeem(
                params.get("code"), client_id, params.get("redirect_uri"),
                params.get("code_verifier"),
            )  # fmt: skip
            if refusal is not None:
                return _oauth_error(refusal.error, refusal.description)
            return self._token_reply(refresh=True, scope="api refresh_token")
        if grant == "refresh_token":
            with self._lock:
                known = params.get("refresh_token") in self._refresh_tokens
            if not known:
                return _oauth_error("invalid_grant", "expired access/refresh token")
            return self._token_reply(refresh=False, scope="api refresh_token")
        if grant == "password":
            if params.get("username") != SANDBOX_USERNAME or params.get("password") != (
                SANDBOX_PASSWORD
            ):
                return _oauth_error("invalid_grant", "authentication failure")
            return self._token_reply(refresh=True, scope="api refresh_token")
        return self._token_reply(refresh=False, scope="api")

    def _token_reply(self, *, refresh: bool, scope: str) -> Reply:
        issued_at = str(int(time.time() * 1000))
        identity = f"{self.url}/id/{data.ORG_ID}/{data.USER_ID}"
        # As documented: HMAC-SHA256 of id + issued_at keyed with the client secret.
        digest = hmac.new(
            self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        answer: dict[str, str] = {"access_token": self.issue_access_token()}
        if refresh:
            answer["refresh_token"] = self.issue_refresh_token()
        answer |= {
            "signature": base64.b64encode(digest).decode(),
            "scope": scope,
            "instance_url": self.url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        no_store = "no-cache,must-revalidate,max-age=0,no-store,private"
        return Reply(200, json_body(answer), {"Cache-Control": no_store})

    # --- resources -------------------------------------------------------------------

    def _versions(self) -> list[dict[str, str]]:
        latest = int(float(self.api_version))
        return [
            {"label": _release_label(v), "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
            for v in range(31, latest + 1)
        ]

    def _describe_global(self, version: str) -> dict[str, Any]:
        return {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [data.global_entry(data.OBJECTS[n], version) for n in sorted(data.OBJECTS)],
        }

    def _limits(self) -> dict[str, Any]:
        with self._lock:
            used = self._api_usage
        return {
            "DailyApiRequests": {"Max": DAILY_API_REQUESTS, "Remaining": DAILY_API_REQUESTS - used},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            "FileStorageMB": {"Max": 1024, "Remaining": 1024},
        }

    def _record(
        self, spec: data.ObjectSpec, record_id: str, params: dict[str, list[str]], version: str
    ) -> Reply:
        row = data.record_number(record_id, spec.key_prefix)
        frame = self.frame(spec.name)
        if row is None or row >= frame.height or len(record_id) not in (15, 18):
            return _not_found()
        if len(record_id) == 18 and frame["Id"][row].lower() != record_id.lower():
            return _not_found()
        if frame["IsDeleted"][row]:
            return _errors(404, "ENTITY_IS_DELETED", "entity is deleted")
        names = [f.name for f in spec.fields]
        if "fields" in params:
            lookup = {n.lower(): n for n in names}
            wanted = [f.strip() for f in params["fields"][0].split(",") if f.strip()]
            unknown = [f for f in wanted if f.lower() not in lookup]
            if unknown:
                return _errors(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{unknown[0]}' on sobject of type {spec.name}",
                )
            names = [lookup[f.lower()] for f in wanted]
        cursor = _Cursor(spec.name, names, pl.Series([row], dtype=pl.UInt32), 1, 1, version)
        return Reply(200, self._records_json(cursor, 0, 1)[1:-1])

    # --- queries ---------------------------------------------------------------------

    def _query(
        self,
        params: dict[str, list[str]],
        headers: Mapping[str, str],
        version: str,
        *,
        include_deleted: bool,
    ) -> Reply:
        soql = (params.get("q") or [""])[0]
        if not soql.strip():
            return _errors(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            query: Query = compile_soql(soql, self._schemas)
        except SoqlError as exc:
            return _errors(400, exc.error_code, exc.message)
        key = (query.normalized, include_deleted, version, tuple(query.fields))
        rows, total = self._select(query, key, include_deleted)
        if query.is_count:
            return Reply(200, json_body({"totalSize": total, "done": True, "records": []}))
        batch = self._batch_size(headers) or DEFAULT_BATCH_SIZE
        cursor = _Cursor(query.sobject, query.fields, rows, total, batch, version, key=key)
        locator = self._open_cursor(cursor) if total > batch else ""
        return self._page(cursor, locator, 0, batch)

    def _select(
        self, query: Query, key: tuple[Any, ...], include_deleted: bool
    ) -> tuple[pl.Series | None, int]:
        """The answering rows (see select_rows) and their count; from the query cache
        when this query was evaluated lately."""
        cached = self._query_cache.get(key) if self._query_cache is not None else None
        if cached is not None:
            return cached
        frame = self.frame(query.sobject)
        rows = select_rows(query, frame, include_deleted=include_deleted)
        selected = (rows, frame.height if rows is None else rows.len())
        if self._query_cache is not None:
            self._query_cache.put(key, selected)
        return selected

    def _query_more(self, locator_offset: str, headers: Mapping[str, str]) -> Reply:
        locator, _, offset = locator_offset.rpartition("-")
        with self._lock:
            self._expire_cursors()
            cursor = self._cursors.get(locator)
            if cursor is not None:
                cursor.touched = time.monotonic()
                self._cursors.move_to_end(locator)
        if cursor is None or not offset.isdigit() or int(offset) > cursor.total:
            return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        batch = self._batch_size(headers) or cursor.batch_size
        return self._page(cursor, locator, int(offset), batch)

    @staticmethod
    def _batch_size(headers: Mapping[str, str]) -> int | None:
        options = headers.get("Sforce-Query-Options") or ""
        m = re.search(r"batchSize\s*=\s*(\d+)", options, re.IGNORECASE)
        if m is None:
            return None
        return min(max(int(m.group(1)), MIN_BATCH_SIZE), DEFAULT_BATCH_SIZE)

    def _open_cursor(self, cursor: _Cursor) -> str:
        cursor.touched = time.monotonic()
        with self._lock:
            self._expire_cursors()
            self._locator_count += 1
            # Counter-based, so two sandboxes with the same seed answer the same bytes.
            locator = data.record_id("01g", self._locator_count)
            self._cursors[locator] = cursor
            while len(self._cursors) > MAX_OPEN_LOCATORS:
                self._cursors.popitem(last=False)
        return locator

    def _expire_cursors(self) -> None:
        deadline = time.monotonic() - LOCATOR_IDLE_SECONDS
        while self._cursors:
            locator, oldest = next(iter(self._cursors.items()))
            if oldest.touched >= deadline:
                break
            del self._cursors[locator]

    def _page(self, cursor: _Cursor, locator: str, start: int, batch: int) -> Reply:
        end = min(start + batch, cursor.total)
        done = end >= cursor.total
        head = f'{{"totalSize":{cursor.total},"done":{"true" if done else "false"},'
        if not done:
            head += f'"nextRecordsUrl":"/services/data/v{cursor.version}/query/{locator}-{end}",'
        prefix = (head + '"records":').encode()
        cache = self._page_cache
        if cache is None or cursor.key is None:
            return Reply(200, self._records_json(cursor, start, end, prefix, b"}"))
        # Keyed by what the query is, not by this execution's locator.
        key = (cursor.key, start, batch)
        records = cache.get(key)
        if records is None:
            buf = io.BytesIO()
            self._write_records(cursor, start, end, buf)
            records = buf.getvalue()  # hands over BytesIO's buffer, no copy
            cache.put(key, records, len(records))
        return Reply(200, b"".join((prefix, records, b"}")))

    def _records_json(
        self, cursor: _Cursor, start: int, end: int, prefix: bytes = b"", suffix: bytes = b""
    ) -> memoryview:
        """Records `start`..`end` of the cursor as a JSON array, serialised by Polars
        between `prefix` and `suffix` into one buffer (pages are megabytes: no copies)."""
        buf = io.BytesIO()
        buf.write(prefix)
        self._write_records(cursor, start, end, buf)
        buf.write(suffix)
        return buf.getbuffer()

    def _write_records(self, cursor: _Cursor, start: int, end: int, buf: io.BytesIO) -> None:
        wire = self._load(cursor.sobject)[1]
        needed = ["Id", *(f for f in cursor.fields if f != "Id")]
        if cursor.rows is None:
            page = wire.select(needed).slice(start, end - start)
        else:
            page = wire.select(pl.col(needed).gather(cursor.rows.slice(start, end - start)))
        url = f"/services/data/v{cursor.version}/sobjects/{cursor.sobject}/"
        attributes = pl.struct(
            pl.lit(cursor.sobject).alias("type"),
            pl.concat_str([pl.lit(url), pl.col("Id")]).alias("url"),
        )
        page.select(attributes.alias("attributes"), *cursor.fields).write_json(buf)

    # --- admin API ---------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: bytes) -> Reply:
        route = (method, path.rstrip("/"))
        if route == ("GET", "/__sandbox/stats"):
            return Reply(200, json_body(self.stats()))
        if route == ("DELETE", "/__sandbox/stats"):
            self.reset_stats()
            return Reply(200, json_body(self.stats()))
        if route == ("GET", "/__sandbox/faults"):
            return Reply(200, json_body({"faults": self.pending_faults()}))
        if route == ("DELETE", "/__sandbox/faults"):
            self.reset_faults()
            return Reply(200, json_body({"faults": []}))
        if route == ("POST", "/__sandbox/faults"):
            try:
                spec = json.loads(body or b"{}")
                for item in spec if isinstance(spec, list) else [spec]:
                    allowed = {"kind", "count", "path_contains", "retry_after", "after"}
                    if not isinstance(item, dict) or not set(item) <= allowed:
                        raise ValueError(f"a fault takes the keys {sorted(allowed)}")
                    self.inject(**item)
            except (ValueError, TypeError) as exc:
                return Reply(400, json_body({"error": str(exc)}))
            return Reply(201, json_body({"faults": self.pending_faults()}))
        if route == ("POST", "/__sandbox/changes"):
            try:
                spec = json.loads(body or b"{}")
                allowed = {"object", "count", "seed", "delete"}
                if not isinstance(spec, dict) or not set(spec) <= allowed:
                    raise ValueError(f"a change takes the keys {sorted(allowed)}")
                change = self.change_records(spec.pop("object", "Opportunity"), **spec)
            except (ValueError, TypeError, KeyError) as exc:
                return Reply(400, json_body({"error": str(exc)}))
            return Reply(200, json_body(change.as_json()))
        if route == ("POST", "/__sandbox/refresh_token"):
            return Reply(201, json_body({"refresh_token": self.issue_refresh_token()}))
        return Reply(404, json_body({"error": f"no admin route {method} {path}"}))


def serve_forever_cli(argv: list[str] | None = None) -> int:
    """Run a sandbox in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m flow_assets.sandbox",
        description="Local Salesforce-compatible REST API with deterministic data.",
    )
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--records", type=int, default=1000, help="Opportunity records")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--api-version", default="59.0")
    parser.add_argument("--client-id", default="flowbridge-sandbox")
    parser.add_argument("--client-secret", default="sandbox-secret")
    parser.add_argument("--tls-cert", help="PEM certificate chain; serves https with --tls-key")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument(
        "--page-cache-mb",
        type=int,
        default=0,
        help="keep up to this many MB of rendered query pages (default 0: no cache)",
    )
    parser.add_argument("--verbose", action="store_true", help="log each request")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.page_cache_mb < 0:
        parser.error("--page-cache-mb must be 0 or more")
    context = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    sandbox = SalesforceSandbox(
        port=args.port,
        records=args.records,
        seed=args.seed,
        client_id=args.client_id,
        client_secret=args.client_secret,
        api_version=args.api_version,
        ssl_context=context,
        quiet=not args.verbose,
        page_cache_mb=args.page_cache_mb,
    )
    try:
        sandbox.start()
        print(f"Salesforce sandbox listening on {sandbox.url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
