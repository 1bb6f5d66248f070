"""Google Analytics 4 source over the Analytics Data API v1beta: one object, `report`, whose
fields are the property's dimensions and metrics; a read is one runReport, paged by offset.

What the API decides here (developers.google.com/analytics/devguides/reporting/data/v1):
- runReport aggregates the requested metrics over the requested dimensions, so a row's key is
  the dimensions read (an upsert's key). At most 9 dimensions and 10 metrics per request (the
  API's 400 INVALID_ARGUMENT says so, naming the connection).
- Every value is a string. Types come from the property's metadata: TYPE_INTEGER metrics are
  Int64, every other metric type (float, seconds, milliseconds, currency...) Float64; `date`
  and `firstSessionDate` (YYYYMMDD) are Date, `dateHour` / `dateHourMinute` Datetime in the
  property's time zone (no zone attached); every other dimension is a String.
- A date range is required: from the cursor (`date` is the only cursor) or 2015-08-14 (the
  API's earliest) to the cursor's end or "today" (the property's today, in its time zone).
- Pages: `limit` (page_size, default 10,000, at most 250,000) and `offset`, until the offset
  reaches `rowCount`; ordering by every dimension keeps the pages stable. An empty report
  omits `rows` and `rowCount` (proto3 JSON leaves out empty values).
- Data of the last 24-48 hours is still processed and changes. A read returns exactly the
  window asked for; a flow re-reads recent days with `incremental.lookback` (e.g. '3 days')
  and `write: upsert` keyed on its dimensions, which makes the re-read harmless.
- equal_to / not_equal_to / in / not_in on a string dimension become a case-sensitive exact
  dimensionFilter; every other filter runs locally.

Auth (scope analytics.readonly): an OAuth client's refresh token (grant_type=refresh_token on
token_url), or a service account key file, whose JWT bearer grant google-auth signs and sends
to the key's token_uri. Access tokens expire; the first 401 fetches a new one.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
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
    RateLimitExceeded,
    UnknownObject,
)
from flow_assets.connectors.http import (
    Answer,
    HttpClient,
    RetryPolicy,
    TransientError,
    parse_json,
    status_of,
)
from flow_assets.connectors.malformed import explain_page
from flow_assets.connectors.oauth import OAuth2
from flow_assets.connectors.oauth_bootstrap import AuthorizationCodeApp
from flow_assets.connectors.paging import paginate
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import FilterSpec

SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"
OBJECT, KIND = "report", "analyticsData#runReport"
DIMENSION = "dimension"
EARLIEST = date(2015, 8, 14)  # the API refuses dates before this
MAX_LIMIT, DEFAULT_LIMIT = 250_000, 10_000
# Temporal dimensions: their type and how their text (with "00" appended to hours) parses.
TEMPORAL = {"date": (pl.Date(), "%Y%m%d"), "firstSessionDate": (pl.Date(), "%Y%m%d"),
            "dateHour": (pl.Datetime("us"), "%Y%m%d%H%M"),
            "dateHourMinute": (pl.Datetime("us"), "%Y%m%d%H%M")}  # fmt: skip
PUSHABLE = ("equal_to", "not_equal_to", "in", "not_in")
_VALUES = pl.List(pl.Struct({"value": pl.String}))
_REPORT = {
    "dimensionHeaders": pl.List(pl.Struct({"name": pl.String})),
    "metricHeaders": pl.List(pl.Struct({"name": pl.String})),
    "rows": pl.List(pl.Struct({"dimensionValues": _VALUES, "metricValues": _VALUES})),
    "rowCount": pl.Int64,
    "kind": pl.String,
}


class GoogleAnalyticsConnection(dg.ConfigurableResource):
    """A Google Analytics 4 property read through the Analytics Data API."""

    property_id: str = Field(
        pattern=r"^\d+$", description="The property's numeric id (Admin > Property details)."
    )
    client_id: str | None = Field(None, description="An OAuth client's id, with refresh_token.")
    client_secret: str | None = Field(None, description="The OAuth client's secret (an EnvVar).")
    refresh_token: str | None = Field(
        None, description="A refresh token the user granted analytics.readonly (an EnvVar)."
    )
    service_account_key_file: str | None = Field(
        None, description="Instead of the OAuth client: the path of a service account key "
        "(JSON); the service account needs Viewer access to the property.",
    )  # fmt: skip
    base_url: str = Field("https://analyticsdata.googleapis.com", description="The API's root.")
    token_url: str = Field(
        "https://oauth2.googleapis.com/token", description="Where refresh tokens are exchanged."
    )
    connection_name: str = Field("google_analytics", description="Named in error messages.")
    max_attempts: int = Field(6, ge=1, description="Attempts per call on 429, 5xx and resets.")

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("client_secret", "refresh_token")

    def authorization_code_app(self) -> AuthorizationCodeApp:
        """`flowbridge oauth`: Google's consent page, with access_type=offline and
        prompt=consent so the answer carries a refresh token. Off Google (a sandbox), both
        URLs are on base_url."""
        if not (self.client_id and self.client_secret):
            raise ConnectorError(f"connection '{self.connection_name}': the authorization-code "
                                 "grant needs client_id and client_secret (an OAuth client of "
                                 "type Desktop app)")  # fmt: skip
        google = self.base_url.rstrip("/") == "https://analyticsdata.googleapis.com"
        authorize = AUTHORIZE_URL if google else self.base_url.rstrip("/") + "/o/oauth2/v2/auth"
        return AuthorizationCodeApp(
            authorize_url=authorize, token_url=self.token_url, client_id=self.client_id,
            client_secret=self.client_secret, scopes=(SCOPE,), pkce=True,
            extra_params={"access_type": "offline", "prompt": "consent"},
            no_refresh_token_hint="ask again with access_type=offline and prompt=consent",
        )  # fmt: skip

    def open(self, max_attempts: int | None = None) -> GoogleAnalyticsClient:
        retry = RetryPolicy(max_attempts=max_attempts or self.max_attempts)
        session = requests.Session()
        name = self.connection_name
        auth: Any
        if self.service_account_key_file:
            if self.refresh_token or self.client_secret:
                raise ConnectorError(f"connection '{name}': give either a service account key "
                                     "file or an OAuth client with a refresh token, not both")  # fmt: skip
            auth = ServiceAccountAuth(self.service_account_key_file, name, session)
        elif self.client_id and self.client_secret and self.refresh_token:
            grant = {"grant_type": "refresh_token", "client_id": self.client_id,
                     "client_secret": self.client_secret, "refresh_token": self.refresh_token}  # fmt: skip
            auth = OAuth2(self.token_url, grant, name, retry, session)
        else:
            raise ConnectorError(f"connection '{name}': set service_account_key_file, or "
                                 "client_id, client_secret and refresh_token")  # fmt: skip
        http = HttpClient(self.base_url, auth, retry, describe_error=describe_error,
                          session=session)  # fmt: skip
        return GoogleAnalyticsClient(name, self.property_id, http)


class ServiceAccountAuth:
    """A service account's access tokens, from google-auth's JWT bearer grant (imported here:
    only service accounts need it, and it costs every process that loads the definitions
    memory)."""

    def __init__(self, key_file: str, connection: str, session: requests.Session):
        from google.auth.transport.requests import Request
        from google.oauth2 import service_account

        self.connection = connection
        self._request = Request(session)
        try:
            self.credentials = service_account.Credentials.from_service_account_file(
                key_file, scopes=[SCOPE]
            )
        except (OSError, ValueError, KeyError) as exc:
            raise AuthError(f"connection '{connection}': cannot use the service account key "
                            f"file {key_file} ({type(exc).__name__}: {exc})") from None  # fmt: skip

    def headers(self) -> dict[str, str]:
        if not self.credentials.valid:
            self.refresh()
        return {"Authorization": f"Bearer {self.credentials.token}"}

    def is_expired(self, answer: Answer) -> bool:
        return answer.status_code == 401

    def refresh(self) -> None:
        from google.auth import exceptions as google_errors

        try:
            self.credentials.refresh(self._request)
        except google_errors.RefreshError as exc:
            what = f"{exc.args[0] if exc.args else exc}"
            if exc.retryable:
                raise TransientError(f"token endpoint: {what}") from None
            raise AuthError(
                f"connection '{self.connection}': Google refused the service account "
                f"{self.credentials.service_account_email} ({what}); check that the key file "
                "is current (not deleted or rotated)"
            ) from None
        except google_errors.TransportError as exc:
            raise TransientError(
                f"token endpoint: {type(exc).__name__}", unreachable=True
            ) from None


def describe_error(answer: Answer) -> str:
    """Google's {"error": {"code", "message", "status"}} as 'STATUS: message'."""
    try:
        error = json.loads(answer.body).get("error")
    except (ValueError, AttributeError):
        return answer.text[:200]
    if isinstance(error, dict):
        return f"{error.get('status', error.get('code'))}: {error.get('message', '')}"
    return answer.text[:200]


class GoogleAnalyticsClient:
    """An open session to one GA4 property: its report as typed Polars pages."""

    def __init__(self, connection: str, property_id: str, http: HttpClient):
        self.connection = connection
        self.property = f"properties/{property_id}"
        self.http = http
        self._schema: ObjectSchema | None = None

    def _call(self, method: str, path: str, parse: Any, **kwargs: Any) -> Any:
        try:
            return self.http.request(method, path, parse=parse, **kwargs)
        except (AuthError, MalformedResponse):
            raise
        except TransientError as exc:
            if status_of(exc) != 429:
                raise
            raise RateLimitExceeded(
                f"connection '{self.connection}': {exc}; the property's Data API quota (tokens "
                "per hour or day) is used up: run later, or read fewer days or fields per run"
            ) from None
        except ConnectorError as exc:
            text, where = str(exc), f"connection '{self.connection}'"
            if status_of(exc) == 401:
                raise AuthError(f"{where}: Google refused the access token ({text})") from None
            if status_of(exc) == 403:
                raise AuthError(f"{where}: no access to {self.property} ({text}); give the user "
                                "or service account Viewer access to the property") from None  # fmt: skip
            raise ConnectorError(f"{where}: {text}") from None

    def check(self) -> None:
        self.describe(OBJECT)

    def list_objects(self) -> list[str]:
        return [OBJECT]

    def describe(self, object_name: str) -> ObjectSchema:
        if object_name != OBJECT:
            raise UnknownObject(
                f"'{object_name}' is not an object of connection '{self.connection}'"
                f"{did_you_mean(object_name, [OBJECT])}; a GA4 property has one object, "
                f"'{OBJECT}' (any of its dimensions and metrics)"
            )
        if self._schema is None:
            body = self._call("GET", f"/v1beta/{self.property}/metadata", parse_json)
            self._schema = ObjectSchema(OBJECT, self._fields(body))
        return self._schema

    def _fields(self, body: Any) -> dict[str, FieldInfo]:
        where = f"connection '{self.connection}': the metadata of {self.property}"
        if not isinstance(body, dict) or not isinstance(body.get("dimensions"), list):
            raise MalformedResponse(f"{where} has no 'dimensions' list")
        fields: dict[str, FieldInfo] = {}
        for item in body["dimensions"] + (body.get("metrics") or []):
            name = item.get("apiName") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                raise MalformedResponse(f"{where}: an entry has no apiName")
            if "type" in item:  # a metric
                dtype = pl.Int64() if item["type"] == "TYPE_INTEGER" else pl.Float64()
                info = FieldInfo(name, str(item["type"]), dtype, nillable=False, filterable=False)
            else:
                dtype = TEMPORAL[name][0] if name in TEMPORAL else pl.String()
                info = FieldInfo(name, DIMENSION, dtype, nillable=False)
            fields.setdefault(name, info)
        return fields

    def can_push_down(self, spec: FilterSpec, info: FieldInfo) -> bool:
        values = spec.value if isinstance(spec.value, list) else [spec.value]
        return (info.source_type == DIMENSION and info.dtype == pl.String()
                and spec.operator in PUSHABLE and all(isinstance(v, str) for v in values))  # fmt: skip

    def date_range(self, request: ReadRequest) -> tuple[str, str] | None:
        """The dateRange of the request's window (a `date` is its day's midnight), or None when
        it holds no day (nothing after the property's earliest possible today)."""
        start = EARLIEST
        if request.cursor_after is not None:
            start = max(start, _day(request.cursor_after) + timedelta(days=1))
        if request.cursor_from is not None:
            start = max(start, _day(request.cursor_from, round_up=True))
        end = "today"
        if request.cursor_before is not None:
            last = _day(request.cursor_before, round_up=True) - timedelta(days=1)
            if last < start:
                return None
            end = last.isoformat()
        # The property's today is at the earliest today in UTC-12; later days hold no data yet.
        if start > (datetime.now(UTC) - timedelta(hours=12)).date():
            return None
        return start.isoformat(), end

    def read(self, request: ReadRequest) -> Iterator[pl.DataFrame]:
        """Typed pages of one runReport over the request's dimensions and metrics."""
        schema = self.describe(request.object)
        infos = schema.require(request.fields, where=f"connection '{self.connection}': fields")
        dims = [i.name for i in infos if i.source_type == DIMENSION]
        metrics = [i.name for i in infos if i.source_type != DIMENSION]
        if request.cursor_field not in (None, "date"):
            raise ConnectorError(f"connection '{self.connection}': the incremental cursor of a "
                                 f"GA4 report is 'date', not '{request.cursor_field}'")  # fmt: skip
        window = self.date_range(request)
        if window is None:
            return
        limit = min(request.page_size or DEFAULT_LIMIT, MAX_LIMIT)
        body: dict[str, Any] = {
            "dateRanges": [{"startDate": window[0], "endDate": window[1]}],
            "dimensions": [{"name": d} for d in dims],
            "metrics": [{"name": m} for m in metrics],
            "orderBys": [{"dimension": {"dimensionName": d}} for d in dims],
            "limit": limit,
        }
        if request.filters:
            body["dimensionFilter"] = _filter_expression(request.filters)
        path = f"/v1beta/{self.property}:runReport"
        parser = ReportParser(self.connection, [schema.fields[n] for n in dims + metrics])

        def fetch(offset: int) -> tuple[pl.DataFrame, int]:
            page = {**body, "offset": offset}
            return self._call("POST", path, lambda b: parser.parse(b, offset, limit), json=page)

        def next_of(offset: int, page: tuple[pl.DataFrame, int]) -> int | None:
            return offset + limit if offset + limit < page[1] else None

        for frame, _ in paginate(fetch, 0, next_of):
            yield frame.select(request.fields)


def _day(moment: date, round_up: bool = False) -> date:
    """A cursor's day; with round_up, a moment after midnight counts from the next day."""
    if not isinstance(moment, datetime):
        return moment
    late = round_up and moment.time() != datetime.min.time()
    return moment.date() + timedelta(days=1 if late else 0)


def _filter_expression(filters: list[FilterSpec]) -> dict[str, Any]:
    expressions = []
    for spec in filters:
        if spec.operator in ("equal_to", "not_equal_to"):
            match = {"stringFilter": {"matchType": "EXACT", "value": spec.value,
                                      "caseSensitive": True}}  # fmt: skip
        else:
            match = {"inListFilter": {"values": spec.value, "caseSensitive": True}}
        expression: dict[str, Any] = {"filter": {"fieldName": spec.field, **match}}
        if spec.operator.startswith("not_"):
            expression = {"notExpression": expression}
        expressions.append(expression)
    return expressions[0] if len(expressions) == 1 else {"andGroup": {"expressions": expressions}}


class ReportParser:
    """One runReport answer's bytes -> (a typed frame of the requested fields, rowCount)."""

    def __init__(self, connection: str, infos: list[FieldInfo]):
        self.connection = connection
        self.dims = [i for i in infos if i.source_type == DIMENSION]
        self.metrics = [i for i in infos if i.source_type != DIMENSION]

    def parse(self, body: bytes, offset: int, limit: int) -> tuple[pl.DataFrame, int]:
        where = f"connection '{self.connection}': the report page at offset {offset}"
        try:
            report = pl.read_json(io.BytesIO(body), schema=_REPORT)
        except pl.exceptions.PolarsError:
            raise MalformedResponse(
                explain_page(body, where, "rows", [], answer="a runReport answer")
            ) from None
        if report.height != 1 or report["kind"][0] != KIND:
            raise MalformedResponse(f"{where} is not a runReport answer (its kind is not {KIND})")
        groups = (("dimension", self.dims), ("metric", self.metrics))
        for kind, infos in groups:
            headers = report[f"{kind}Headers"][0]
            names = [] if headers is None else headers.struct.field("name").to_list()
            if names != [i.name for i in infos]:
                raise MalformedResponse(f"{where}: its {kind}Headers are not the {kind}s asked for")
        rows, count = report["rows"][0], report["rowCount"][0] or 0
        rows = pl.Series("row", [], _REPORT["rows"].inner) if rows is None else rows.alias("row")
        if len(rows) != max(0, min(limit, count - offset)):
            raise MalformedResponse(f"{where} has {len(rows)} rows, but its rowCount is {count}")
        raw = rows.to_frame().unnest("row").with_row_index()
        short = raw.filter(pl.any_horizontal(pl.col(f"{kind}Values").list.len().fill_null(0)
                                             != len(infos) for kind, infos in groups))  # fmt: skip
        if short.height:
            raise MalformedResponse(f"{where}: row {offset + short['index'][0]} has not "
                                    f"{len(self.dims)} dimension and {len(self.metrics)} metric values")  # fmt: skip
        typed = raw.select("index", *(
            _typed(pl.col(f"{kind}Values").list.get(n).struct.field("value"), info)
            for kind, infos in groups for n, info in enumerate(infos)))  # fmt: skip
        for info in self.dims + self.metrics:
            bad = typed.filter(pl.col(info.name).is_null())
            if bad.height:
                what = info.name if info.source_type == DIMENSION else f"{info.source_type} value"
                raise MalformedResponse(f"{where}: row {offset + bad['index'][0]}: {info.name} is "
                                        f"not a valid {what}")  # fmt: skip
        return typed.drop("index"), count


def _typed(text: pl.Expr, info: FieldInfo) -> pl.Expr:
    if info.source_type != DIMENSION:
        return text.cast(info.dtype, strict=False).alias(info.name)
    if info.name not in TEMPORAL:
        return text.fill_null("").alias(info.name)  # proto3 JSON leaves an empty value out
    text = text + "00" if info.name == "dateHour" else text
    return text.str.strptime(info.dtype, TEMPORAL[info.name][1], strict=False).alias(info.name)
