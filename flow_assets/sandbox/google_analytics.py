"""Local Google Analytics 4 Data API (v1beta) stand-in: one property's metadata and runReport
(aggregation over any of its dimensions, date ranges, offset paging, dimension filters,
orderBys), Google's error bodies, and an OAuth token endpoint for refresh tokens and service
account JWTs, with deterministic hourly data and injectable faults, for tests and demos."""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from flow_assets.sandbox.authorization_codes import AuthorizationCodes
from flow_assets.sandbox.server import Reply, SandboxServer, json_body

FAULT_KINDS = ("expire_token", "429", "503", "malformed")
QUOTA_MESSAGE = ("Exhausted property tokens per hour for a project per property. These quota "
                 "tokens will return in under an hour.")  # fmt: skip
PROPERTY_ID = "123456789"
SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUTHORIZE_PATH = "/o/oauth2/v2/auth"  # accounts.google.com's, on the sandbox
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # a JWT's aud, wherever sent
SERVICE_ACCOUNT = "flowbridge-reader@flowbridge-sandbox.iam.gserviceaccount.com"
FIRST_DAY, DAYS = date(2024, 1, 1), 120
EARLIEST = date(2015, 8, 14)
MAX_LIMIT, DEFAULT_LIMIT, MAX_DIMENSIONS, MAX_METRICS = 250_000, 10_000, 9, 10
COUNTRIES = ("United States", "Germany", "Japan", "Brazil")
SOURCES = ("google", "(direct)", "newsletter")
DEVICES = ("desktop", "mobile", "tablet")
DIMENSIONS = {"date": ("Date", "Time"), "dateHour": ("Date + hour (YYYYMMDDHH)", "Time"),
              "country": ("Country", "Geography"), "sessionSource": ("Session source",
              "Traffic source"), "deviceCategory": ("Device category", "Platform / device")}  # fmt: skip
METRICS = {"activeUsers": ("Active users", "TYPE_INTEGER"), "sessions": ("Sessions", "TYPE_INTEGER"),
           "screenPageViews": ("Views", "TYPE_INTEGER"),
           "engagedSessions": ("Engaged sessions", "TYPE_INTEGER"),
           "engagementRate": ("Engagement rate", "TYPE_FLOAT"),
           "userEngagementDuration": ("User engagement", "TYPE_SECONDS"),
           "averageSessionDuration": ("Average session duration", "TYPE_SECONDS"),
           "totalRevenue": ("Total revenue", "TYPE_CURRENCY")}  # fmt: skip
_SUMMED = ("activeUsers", "sessions", "screenPageViews", "engagedSessions",
           "userEngagementDuration", "totalRevenue")  # fmt: skip
_WIRE_FORMAT = {"date": "%Y%m%d", "dateHour": "%Y%m%d%H"}
_MATCH_TYPES = (
    "",
    "EXACT",
    "BEGINS_WITH",
    "ENDS_WITH",
    "CONTAINS",
    "FULL_REGEXP",
    "PARTIAL_REGEXP",
)
_REQUEST_FIELDS = {"property", "dimensions", "metrics", "dateRanges", "dimensionFilter", "offset",
                   "limit", "orderBys", "currencyCode", "keepEmptyRows", "returnPropertyQuota"}  # fmt: skip
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
           404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}  # fmt: skip


class BadRequest(Exception):
    """A request the API refuses with 400 INVALID_ARGUMENT and this message."""


def google_error(code: int, message: str) -> Reply:
    return Reply(code, json_body({"error": {"code": code, "message": message,
                                            "status": _STATUS[code]}}))  # fmt: skip


def build_hours(seed: int) -> pl.DataFrame:
    """One row per hour of DAYS days and country x source x device, with additive metrics."""
    combos = len(COUNTRIES) * len(SOURCES) * len(DEVICES)
    n = pl.int_range(DAYS * 24 * combos, eager=True).alias("i")
    noise = ((pl.col("i") * 2654435761 + seed * 40503) % 4294967291 // 7) % 1000
    frame = pl.DataFrame(n).with_columns(noise=noise, combo=pl.col("i") % combos,
                                         hour=pl.col("i") // combos)  # fmt: skip
    idx = {"country": pl.col("combo") // (len(SOURCES) * len(DEVICES)),
           "sessionSource": pl.col("combo") // len(DEVICES) % len(SOURCES),
           "deviceCategory": pl.col("combo") % len(DEVICES)}  # fmt: skip
    names = {"country": COUNTRIES, "sessionSource": SOURCES, "deviceCategory": DEVICES}
    start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day)
    night = (pl.col("hour") % 24).is_between(2, 5) & (pl.col("deviceCategory") == "tablet")
    return (
        frame.with_columns(
            idx[d].replace_strict(dict(enumerate(v)), return_dtype=pl.String).alias(d)
            for d, v in names.items()
        )
        .with_columns(dateHour=pl.lit(start) + pl.duration(hours=pl.col("hour")))
        .with_columns(date=pl.col("dateHour").dt.date(),
                      sessions=pl.when(night).then(0).otherwise(pl.col("noise") % 9 + 1))
        .with_columns(activeUsers=pl.col("sessions") - pl.col("noise") % 2 * (pl.col("sessions") > 1),
                      screenPageViews=pl.col("sessions") * (pl.col("noise") % 4 + 1),
                      engagedSessions=pl.col("sessions") * (pl.col("noise") % 3) // 2,
                      userEngagementDuration=(pl.col("sessions") * (pl.col("noise") % 90)).cast(pl.Float64),
                      totalRevenue=pl.when(pl.col("noise") % 5 == 0)
                      .then(pl.col("sessions") * 3.17).otherwise(0.0).round(2))
        .select("date", "dateHour", *names, *_SUMMED)
    )  # fmt: skip


def aggregate(
    hours: pl.DataFrame, dims: list[str], metrics: list[str], keep_empty: bool
) -> pl.DataFrame:
    """The report over `dims`: summed metrics and the ratios recomputed from the sums."""
    sums = [pl.col(m).sum() for m in _SUMMED]
    grouped = hours.group_by(dims).agg(sums) if dims else hours.select(sums)
    per_session = {
        "engagementRate": "engagedSessions",
        "averageSessionDuration": "userEngagementDuration",
    }
    report = grouped.with_columns(
        [pl.when(pl.col("sessions") > 0).then(pl.col(part) / pl.col("sessions")).otherwise(0.0)
         .alias(ratio) for ratio, part in per_session.items()]
        + [pl.col("totalRevenue").round(2)]
    ).select(*dims, *metrics)  # fmt: skip
    if metrics and not keep_empty:
        report = report.filter(pl.any_horizontal(pl.col(m) != 0 for m in metrics))
    return report.sort(dims) if dims else report


class GoogleAnalyticsSandbox(SandboxServer):
    """The Analytics Data API of one GA4 property on 127.0.0.1, with its token endpoint at
    /token: an OAuth client (`client_id`, `client_secret`) exchanging `refresh_token`, and a
    service account (`service_account_key()` is its key file) signing JWT bearer grants.
    Access tokens live `token_seconds`."""

    product = "GoogleAnalytics"
    content_type = "application/json; charset=UTF-8"
    fault_kinds = FAULT_KINDS

    def __init__(
        self, port: int = 0, seed: int = 7, property_id: str = PROPERTY_ID,
        client_id: str = "flowbridge-sandbox", client_secret: str = "sandbox-secret",
        refresh_token: str = "1//sandbox-refresh-token", token_seconds: int = 3599,
    ) -> None:  # fmt: skip
        super().__init__(port)
        self.property_id, self.seed = property_id, seed
        self.client_id, self.client_secret = client_id, client_secret
        self.refresh_token, self.token_seconds = refresh_token, token_seconds
        self._refresh_tokens = {refresh_token}  # and those the authorization-code grant issued
        self.dimensions = dict(DIMENSIONS)  # a test may archive one (as a custom definition)
        self._tokens: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self._lock = threading.Lock()
        self.requests: list[str] = []  # "METHOD path", in order (no credentials in them)
        self.reports: list[dict[str, Any]] = []  # runReport bodies as received
        self.grants: list[str] = []  # grant_type of each token request

    # --- truth, credentials ---------------------------------------------------------

    @cached_property
    def hours(self) -> pl.DataFrame:
        return build_hours(self.seed)

    def frame(self, dimensions: list[str], metrics: list[str], start: date | None = None,
              end: date | None = None) -> pl.DataFrame:  # fmt: skip
        """The typed truth: the report over these dimensions and metrics, by dimension."""
        hours = self.hours.filter(pl.col("date").is_between(start or EARLIEST, end or date.max))
        return aggregate(hours, dimensions, metrics, keep_empty=False)

    @cached_property
    def _key(self) -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def service_account_key(self) -> dict[str, str]:
        """The service account's key file (JSON), as the Cloud console hands it out."""
        pem = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()  # fmt: skip
        return {"type": "service_account", "project_id": "flowbridge-sandbox",
                "private_key_id": self._key_id, "private_key": pem, "client_email": SERVICE_ACCOUNT,
                "client_id": "109876543210987654321", "token_uri": f"{self.url}/token",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth"}  # fmt: skip

    @property
    def _key_id(self) -> str:
        return f"{self.seed:040x}"

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    @cached_property
    def authorization_codes(self) -> AuthorizationCodes:
        """GET /o/oauth2/v2/auth's codes (Google's consent page, "Allow" already clicked)."""
        return AuthorizationCodes(self.client_id)

    def _issue(self) -> dict[str, Any]:
        token = "ya29.sandbox-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + self.token_seconds
        return {"access_token": token, "expires_in": self.token_seconds, "scope": SCOPE,
                "token_type": "Bearer"}  # fmt: skip

    # --- requests -------------------------------------------------------------------

    def respond(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        path = urlsplit(raw_path).path
        with self._lock:
            self.requests.append(f"{method} {path}")
        if path == "/token" and method == "POST":
            return self._token(body)
        if path == AUTHORIZE_PATH:
            return Reply(*self.authorization_codes.authorize(method, urlsplit(raw_path).query))
        fault = self.faults.take(raw_path)
        if fault is not None and fault.kind == "expire_token":
            self.expire_tokens()  # past expires_in: every token issued so far stops working
        elif fault is not None and fault.kind != "malformed":
            extra = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            reply = (google_error(429, QUOTA_MESSAGE) if fault.kind == "429"
                     else google_error(503, "The service is currently unavailable."))  # fmt: skip
            return Reply(reply.status, reply.body, extra)
        reply = self._route(method, path, headers, body)
        if fault is not None and fault.kind == "malformed":  # a 200 whose JSON stops half way
            return Reply(200, reply.body[: max(1, len(reply.body) // 2)])
        return reply

    def _route(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        with self._lock:
            valid = scheme == "Bearer" and self._tokens.get(token, 0) > time.time()
        if not valid:
            return google_error(401, "Request had invalid authentication credentials. Expected "
                                "OAuth 2 access token, login cookie or other valid authentication "
                                "credential.")  # fmt: skip
        match = re.fullmatch(r"/v1beta/properties/([^/:]+)(/metadata|:runReport)", path)
        if match is None:
            return google_error(404, f"Method not found: {path}")
        if match[1] != self.property_id:
            return google_error(403, "User does not have sufficient permissions for this property.")
        try:
            if match[2] == "/metadata" and method == "GET":
                return Reply(200, json_body(self._metadata()))
            if match[2] == ":runReport" and method == "POST":
                return Reply(200, json_body(self._run_report(body)))
        except BadRequest as exc:
            return google_error(400, str(exc))
        return google_error(404, f"Method not found: {method} {path}")

    def _metadata(self) -> dict[str, Any]:
        name = f"properties/{self.property_id}/metadata"
        dims = [{"apiName": k, "uiName": ui, "description": ui, "category": cat}
                for k, (ui, cat) in self.dimensions.items()]  # fmt: skip
        metrics = [{"apiName": k, "uiName": ui, "description": ui, "type": kind,
                    "category": "Session" if kind != "TYPE_CURRENCY" else "Revenue"}
                   for k, (ui, kind) in METRICS.items()]  # fmt: skip
        return {"name": name, "dimensions": dims, "metrics": metrics}

    def _run_report(self, body: bytes) -> dict[str, Any]:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise BadRequest("Invalid JSON payload received.") from None
        if not isinstance(request, dict):
            raise BadRequest("Invalid JSON payload received. Expected an object.")
        with self._lock:
            self.reports.append(request)
        for key in request:
            if key not in _REQUEST_FIELDS:
                raise BadRequest(f'Invalid JSON payload received. Unknown name "{key}": '
                                 "Cannot find field.")  # fmt: skip
        dims = _names(request.get("dimensions"), self.dimensions, "dimension")
        metrics = _names(request.get("metrics"), METRICS, "metric")
        if len(dims) > MAX_DIMENSIONS or len(metrics) > MAX_METRICS:
            raise BadRequest(f"Requests can have at most {MAX_DIMENSIONS} dimensions and "
                             f"{MAX_METRICS} metrics.")  # fmt: skip
        ranges = request.get("dateRanges") or []
        if len(ranges) != 1 or not isinstance(ranges[0], dict):
            raise BadRequest("dateRanges: the sandbox answers exactly one date range.")
        start, end = (self._date(ranges[0].get(k), k) for k in ("startDate", "endDate"))
        if start > end:
            raise BadRequest(f"Invalid date range: startDate {start} is after endDate {end}.")
        hours = self.hours.filter(pl.col("date").is_between(start, end))
        if request.get("dimensionFilter") is not None:
            hours = hours.filter(_filter(request["dimensionFilter"]))
        report = aggregate(hours, dims, metrics, bool(request.get("keepEmptyRows")))
        report = _order(report, request.get("orderBys") or [], dims, metrics)
        limit, offset = (
            _count(request.get("limit"), "limit"),
            _count(request.get("offset"), "offset"),
        )
        page = report.slice(offset, min(limit or DEFAULT_LIMIT, MAX_LIMIT))
        wire = page.select([pl.col(d).dt.strftime(_WIRE_FORMAT[d]) if d in _WIRE_FORMAT
                            else pl.col(d) for d in dims] + [pl.col(m).cast(pl.String) for m in metrics])  # fmt: skip
        answer: dict[str, Any] = {
            "dimensionHeaders": [{"name": d} for d in dims],
            "metricHeaders": [{"name": m, "type": METRICS[m][1]} for m in metrics],
            "rows": [{"dimensionValues": [{"value": v} for v in row[: len(dims)]],
                      "metricValues": [{"value": v} for v in row[len(dims):]]}
                     for row in wire.iter_rows()],
            "rowCount": report.height,
            "metadata": {"currencyCode": "USD", "timeZone": "Etc/UTC"},
            "kind": "analyticsData#runReport",
        }  # fmt: skip
        return {k: v for k, v in answer.items() if v}  # proto3 JSON leaves out empty values

    def _date(self, value: Any, name: str) -> date:
        today = datetime.now(UTC).date()
        text = str(value or "")
        ago = re.fullmatch(r"(\d+)daysAgo", text)
        try:
            day = (today if text == "today" else today - timedelta(days=1) if text == "yesterday"
                   else today - timedelta(days=int(ago[1])) if ago else date.fromisoformat(text))  # fmt: skip
        except ValueError:
            raise BadRequest(f"Invalid {name}: '{text}'. Use YYYY-MM-DD, NdaysAgo, yesterday or "
                             "today.") from None  # fmt: skip
        if day < EARLIEST:
            raise BadRequest(f"Invalid {name}: {day} is before {EARLIEST}.")
        return day

    def _token(self, body: bytes) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}
        grant = form.get("grant_type", "")
        with self._lock:
            self.grants.append(grant)
        client = form.get("client_id") == self.client_id and secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        )
        if grant in ("refresh_token", "authorization_code") and not client:
            return Reply(401, json_body({"error": "invalid_client",
                                         "error_description": "Unauthorized"}))  # fmt: skip
        if grant == "authorization_code":  # with access_type=offline: a refresh token too
            refusal = self.authorization_codes.redeem(
                form.get("code"), form.get("client_id"), form.get("redirect_uri"),
                form.get("code_verifier"),
            )  # fmt: skip
            if refusal is not None:
                return Reply(400, json_body({"error": refusal.error,
                                             "error_description": refusal.description}))  # fmt: skip
            refresh = "1//sandbox-" + secrets.token_urlsafe(32)
            with self._lock:
                self._refresh_tokens.add(refresh)
            return Reply(200, json_body(self._issue() | {"refresh_token": refresh}))
        if grant == "refresh_token":
            with self._lock:
                known = form.get("refresh_token", "") in self._refresh_tokens
            if not known:
                return Reply(400, json_body({"error": "invalid_grant",
                                             "error_description": "Bad Request"}))  # fmt: skip
        elif grant == JWT_GRANT:
            problem = self._jwt_problem(form.get("assertion", ""))
            if problem:
                return Reply(400, json_body({"error": "invalid_grant",
                                             "error_description": problem}))  # fmt: skip
        else:
            return Reply(400, json_body({"error": "unsupported_grant_type",
                                         "error_description": f"Invalid grant_type: {grant}"}))  # fmt: skip
        return Reply(200, json_body(self._issue()))

    def _jwt_problem(self, assertion: str) -> str | None:
        """Why a service account's signed JWT is refused, or None (RS256, key id, iss, aud,
        a lifetime of at most an hour around now, an Analytics scope)."""
        try:
            head, claims_part, signature = assertion.split(".")
            header, claims = (json.loads(_unb64(p)) for p in (head, claims_part))
            self._key.public_key().verify(_unb64(signature), f"{head}.{claims_part}".encode(),
                                          padding.PKCS1v15(), hashes.SHA256())  # fmt: skip
        except (ValueError, InvalidSignature):
            return "Invalid JWT Signature."
        if header.get("alg") != "RS256" or header.get("kid", self._key_id) != self._key_id:
            return "Invalid JWT Signature."
        if claims.get("iss") != SERVICE_ACCOUNT:
            return "Invalid grant: account not found"
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            return "Invalid JWT: Failed audience check."
        now, iat, exp = time.time(), claims.get("iat", 0), claims.get("exp", 0)
        if not (iat - 300 <= now < exp and exp - iat <= 3600):
            return ("Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                    "reasonable timeframe. Check your iat and exp values in the JWT claim.")  # fmt: skip
        if "analytics" not in str(claims.get("scope", "")):
            return "Invalid JWT: the scope does not include Google Analytics."
        return None

    def internal_error(self) -> Reply:
        return google_error(500, "Internal error encountered.")


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _names(items: Any, known: Mapping[str, Any], kind: str) -> list[str]:
    names = [i.get("name") if isinstance(i, dict) else None for i in items or []]
    for name in names:
        if name not in known:
            raise BadRequest(f"Field {name} is not a valid {kind}. For a list of valid dimensions "
                             "and metrics, see https://developers.google.com/analytics/devguides/"
                             "reporting/data/v1/api-schema")  # fmt: skip
    return names


def _count(value: Any, name: str) -> int:
    try:
        number = int(value or 0)  # int64 fields arrive as JSON numbers or strings
    except (TypeError, ValueError):
        raise BadRequest(f"Invalid value at '{name}' (TYPE_INT64), \"{value}\"") from None
    if number < 0:
        raise BadRequest(f"{name} must be positive.")
    return number


def _filter(expression: Any) -> pl.Expr:
    """A FilterExpression over the dimensions (as their wire text) as a Polars predicate."""
    if not isinstance(expression, dict) or len(expression) != 1:
        raise BadRequest("dimensionFilter: a FilterExpression has exactly one of andGroup, "
                         "orGroup, notExpression or filter.")  # fmt: skip
    ((kind, value),) = expression.items()
    if kind in ("andGroup", "orGroup"):
        parts = [_filter(e) for e in (value or {}).get("expressions") or []]
        if not parts:
            raise BadRequest(f"dimensionFilter: {kind} has no expressions.")
        return pl.all_horizontal(parts) if kind == "andGroup" else pl.any_horizontal(parts)
    if kind == "notExpression":
        return ~_filter(value)
    if kind != "filter" or not isinstance(value, dict):
        raise BadRequest(f"dimensionFilter: unknown expression '{kind}'.")
    name = value.get("fieldName")
    if name not in DIMENSIONS:
        raise BadRequest(f"Field {name} is not a valid dimension.")
    col = pl.col(name).dt.strftime(_WIRE_FORMAT[name]) if name in _WIRE_FORMAT else pl.col(name)
    if "stringFilter" in value:
        spec = value["stringFilter"]
        match = spec.get("matchType", 1)
        match = _MATCH_TYPES[match] if isinstance(match, int) and match < 7 else match
        text = str(spec.get("value", ""))
        if not spec.get("caseSensitive"):
            col, text = col.str.to_lowercase(), text.lower()
        tests = {"EXACT": lambda: col == text, "BEGINS_WITH": lambda: col.str.starts_with(text),
                 "ENDS_WITH": lambda: col.str.ends_with(text),
                 "CONTAINS": lambda: col.str.contains(text, literal=True),
                 "FULL_REGEXP": lambda: col.str.contains(f"^(?:{text})$"),
                 "PARTIAL_REGEXP": lambda: col.str.contains(text)}  # fmt: skip
        if match not in tests:
            raise BadRequest(f"dimensionFilter: unknown matchType {match}.")
        return tests[match]()
    if "inListFilter" in value:
        spec = value["inListFilter"]
        values = [str(v) for v in spec.get("values") or []]
        if not spec.get("caseSensitive"):
            col, values = col.str.to_lowercase(), [v.lower() for v in values]
        return col.is_in(values)
    raise BadRequest("dimensionFilter: the sandbox filters dimensions by stringFilter or "
                     "inListFilter only.")  # fmt: skip


def _order(
    report: pl.DataFrame, order_bys: list[Any], dims: list[str], metrics: list[str]
) -> pl.DataFrame:
    """orderBys by dimension or metric; without them, by the first metric descending."""
    keys, descending = [], []
    for order in order_bys:
        name = ((order.get("dimension") or {}).get("dimensionName")
                or (order.get("metric") or {}).get("metricName")) if isinstance(order, dict) else None  # fmt: skip
        if name not in dims + metrics:
            raise BadRequest(f"orderBys: {name} is not a dimension or metric of the request.")
        keys.append(name)
        descending.append(bool(order.get("desc")))
    if not keys:
        keys, descending = (
            (metrics[:1] + dims, [True] + [False] * len(dims))
            if metrics
            else (dims, [False] * len(dims))
        )
    return report.sort(keys, descending=descending, maintain_order=True) if keys else report
