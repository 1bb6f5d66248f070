"""ServiceNow source over the Table API: any table (incident, change_request...), typed by the
data dictionary, read in sys_updated_on order with offset paging.

What the API decides here (docs.servicenow.com, "Table API", "Encoded query strings",
"OAuth API request parameters", "Inbound REST API rate limiting"):
- `GET /api/now/table/{table}` answers `{"result": [...]}`; with `sysparm_display_value=false`
  every value is text ("" when empty), so values are typed here from the dictionary
  (`sys_dictionary`: element, internal_type) of the table and the tables it extends
  (`sys_db_object.super_class`: incident and change_request extend task). An empty value is
  read as null. `sysparm_exclude_reference_link=true` makes a reference field its sys_id.
- Paging is `sysparm_offset` + `sysparm_limit` (at most 10,000); the answer's `Link` header
  names the rel="next" page, which is followed when sent; without a Link header a short page
  is the last. The query orders by the cursor and sys_id (`ORDERBY`), so offsets are stable.
- `sysparm_query` is an encoded query: conditions joined by `^`; a `^` inside a value is
  written `^^`. glide_date_time values are "YYYY-MM-DD HH:MM:SS" in UTC, whole seconds: the
  cursor bounds are rounded to the second in the query so that the query keeps exactly the
  records the bounds keep (and the rows are filtered here again).
- A condition on a field the table lacks is ignored by ServiceNow (all rows come back), so only
  described fields are ever put in a query.
- Pushed down (can_push_down): comparisons (<, <=, >, >=, between) of integer and decimal
  fields with numbers, `equal_to` of integer fields with integers, and comparisons of
  glide_date_time fields with whole-second moments with a UTC offset. Not pushed down: text
  (ServiceNow compares text case-insensitively), booleans, `!=`, IN, null tests (ServiceNow's
  handling of empty values differs from a null's), glide_date.
- Errors are `{"error": {"message", "detail"}, "status": "failure"}`; a 401 for refused
  credentials; a 429 with Retry-After from a rate limit rule (waited out by HttpClient).
- Deleted records leave the table (to sys_audit_delete): `include_deleted` is refused.

Auth: basic (`username`/`password`: a 401 is final), or OAuth on POST /oauth_token.do with a
client (`client_id`/`client_secret`): the password grant (with `username`/`password`) whose
refresh token renews an expired access token (the password grant again once the refresh
token has expired too), or the client credentials grant (re-granted on expiry).
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
from flow_assets.connectors.http import (
    Answer,
    HttpClient,
    RetryPolicy,
    TransientError,
    parse_json,
    status_of,
)
from flow_assets.connectors.malformed import explain_page, text_fits
from flow_assets.connectors.paging import next_link, paginate
from flow_assets.connectors.static_auth import StaticAuth
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import FilterSpec

MAX_LIMIT = 10_000  # the Table API's largest sysparm_limit
DEFAULT_LIMIT = 1_000
TABLE_PATH = "/api/now/table/"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME = pl.Datetime("us", "UTC")
_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # a table or field name, as it may appear in a query

# internal_type (sys_dictionary) -> Polars; every other type (string, reference, GUID,
# choice lists stored as text, journal, html, url...) is text.
DTYPES: dict[str, pl.DataType] = {
    "integer": pl.Int64(), "longint": pl.Int64(),
    "decimal": pl.Float64(), "float": pl.Float64(), "numeric": pl.Float64(),
    "boolean": pl.Boolean(),
    "glide_date_time": _TIME, "due_date": _TIME,
    "glide_date": pl.Date(),
}  # fmt: skip
INTEGER_TYPES = ("integer", "longint")
NUMBER_TYPES = (*INTEGER_TYPES, "decimal", "float", "numeric")
DATETIME_TYPES = ("glide_date_time", "due_date")
COMPARISONS = {
    "less_than": "<", "less_than_or_equal_to": "<=", "greater_than": ">",
    "greater_than_or_equal_to": ">=", "between": "BETWEEN",
}  # fmt: skip


class ServiceNowConnection(dg.ConfigurableResource):
    """A ServiceNow instance reached through its REST Table API (basic auth or OAuth)."""

    instance: str | None = Field(
        None, description="The instance name: https://{instance}.service-now.com."
    )
    base_url: str | None = Field(
        None, description="Instead of instance: the instance's root URL (a sandbox)."
    )
    username: str | None = Field(
        None, description="The integration user (basic auth, or OAuth's password grant)."
    )
    password: str | None = Field(None, description="The user's password (an EnvVar).")
    client_id: str | None = Field(
        None, description="An OAuth client's id (System OAuth > Application Registry)."
    )
    client_secret: str | None = Field(None, description="The OAuth client's secret (an EnvVar).")
    connection_name: str = Field("servicenow", description="Named in error messages.")
    max_attempts: int = Field(6, ge=1, description="Attempts per call on 429, 5xx and resets.")

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password", "client_secret")

    def root(self) -> str:
        if bool(self.instance) == bool(self.base_url):
            raise self._needs("give either instance or base_url")
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"https://{self.instance}.service-now.com"

    def open(self, max_attempts: int | None = None) -> ServiceNowClient:
        root = self.root()
        retry = RetryPolicy(max_attempts=max_attempts or self.max_attempts)
        session = requests.Session()
        auth: Any
        if bool(self.username) != bool(self.password):
            raise self._needs("username and password go together")
        if self.client_id or self.client_secret:
            if not (self.client_id and self.client_secret):
                raise self._needs("client_id and client_secret go together")
            client = {"client_id": self.client_id, "client_secret": self.client_secret}
            if self.username:
                grant = {"grant_type": "password", **client, "username": self.username,
                         "password": self.password or ""}  # fmt: skip
            else:
                grant = {"grant_type": "client_credentials", **client}
            auth = ServiceNowOAuth(root + "/oauth_token.do", grant, self.connection_name, retry,
                                   session)  # fmt: skip
        elif self.username:
            auth = StaticAuth.basic(self.username, self.password or "")
        else:
            raise self._needs("set username/password, or client_id/client_secret (OAuth)")
        return ServiceNowClient(self.connection_name, root, auth, retry, session)

    def _needs(self, what: str) -> ConnectorError:
        return ConnectorError(f"connection '{self.connection_name}': {what}")


@dataclass
class ServiceNowOAuth:
    """Bearer tokens from /oauth_token.do: the configured grant first; on expiry the refresh
    token it gave (a password grant gives one), else, or once that is refused, the grant again."""

    token_url: str
    grant: dict[str, str]  # holds secrets: never logged
    connection: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session: requests.Session = field(default_factory=requests.Session)
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    grants: list[str] = field(default_factory=list)  # grant types used, in order (no secrets)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __repr__(self) -> str:
        return f"ServiceNowOAuth({self.token_url!r}, grant_type={self.grant['grant_type']!r})"

    def headers(self) -> dict[str, str]:
        if self.access_token is None:
            self.refresh()
        return {"Authorization": f"Bearer {self.access_token}"}

    def is_expired(self, answer: Answer) -> bool:
        return answer.status_code == 401

    def refresh(self) -> None:
        with self._lock:
            if self.refresh_token:
                renew = {"grant_type": "refresh_token", "client_id": self.grant["client_id"],
                         "client_secret": self.grant["client_secret"],
                         "refresh_token": self.refresh_token}  # fmt: skip
                try:
                    self._take(self._post(renew))
                    return
                except AuthError:
                    self.refresh_token = None  # expired or revoked: grant again
            self._take(self._post(self.grant))

    def _post(self, form: dict[str, str]) -> Any:
        self.grants.append(form["grant_type"])
        client = HttpClient(self.token_url, retry=self.retry, session=self.session,
                            describe_error=describe_error)  # fmt: skip
        try:
            # The token endpoint takes a form (a JSON body is refused).
            return client.request("POST", self.token_url, parse=parse_json, data=form)
        except TransientError:
            raise  # unreachable or failing: not a verdict on the credentials
        except ConnectorError as exc:
            raise AuthError(
                f"connection '{self.connection}': authentication failed ({form['grant_type']} "
                f"grant): {exc}; check the client id and secret and the user's password "
                "(environment variables)"
            ) from None

    def _take(self, body: Any) -> None:
        if not isinstance(body, dict) or not body.get("access_token"):
            raise AuthError(
                f"connection '{self.connection}': the token endpoint answered without an "
                "access_token"
            )
        self.access_token = body["access_token"]
        self.refresh_token = body.get("refresh_token") or self.refresh_token


def describe_error(answer: Answer) -> str:
    """ServiceNow's {"error": {"message", "detail"}, "status": "failure"}, OAuth's
    {"error", "error_description"}, or text."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return answer.text[:200]
    if isinstance(body, dict) and "error" in body:
        error = body["error"]
        if isinstance(error, dict):
            message, detail = error.get("message") or "", error.get("detail") or ""
            return f"{message}: {detail}" if detail else str(message)
        detail = body.get("error_description") or ""
        return f"{error}: {detail}" if detail else str(error)
    return answer.text[:200]


class _HeaderKeepingHttp(HttpClient):
    """HttpClient that keeps the headers of the last answer on this thread (for Link)."""

    def _send(self, method: str, url: str, kwargs: dict) -> Answer:
        answer = super()._send(method, url, kwargs)
        self.__dict__.setdefault("_local", threading.local()).headers = answer.headers
        return answer

    @property
    def last_headers(self) -> Mapping[str, str]:
        return getattr(self.__dict__.get("_local"), "headers", {})


def escape(value: str) -> str:
    """A value as encoded-query text: `^` (the condition separator) is written `^^`."""
    return value.replace("^", "^^")


def encoded_query(conditions: Sequence[str], order_by: Sequence[str] = ()) -> str:
    """Conditions (already `field` + operator + escaped value) ANDed, then the ORDERBYs."""
    return "^".join([*conditions, *(f"ORDERBY{name}" for name in order_by)])


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def _whole_second(moment: datetime, up: bool) -> datetime:
    """The moment rounded to its second, down or up (ServiceNow's date-times are whole seconds)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    floor = moment.replace(microsecond=0)
    return floor + timedelta(seconds=1) if up and floor != moment else floor


def cursor_conditions(request: ReadRequest) -> list[str]:
    """The cursor bounds as conditions keeping exactly the whole-second values they keep:
    `> t` is `> floor(t)`, `>= t` is `>= ceil(t)`, `< t` is `< ceil(t)`."""
    name = request.cursor_field
    if name is None:
        return []
    conditions = []
    if request.cursor_after is not None:
        conditions.append(f"{name}>{escape(_stamp(_whole_second(request.cursor_after, False)))}")
    if request.cursor_from is not None:
        conditions.append(f"{name}>={escape(_stamp(_whole_second(request.cursor_from, True)))}")
    if request.cursor_before is not None:
        conditions.append(f"{name}<{escape(_stamp(_whole_second(request.cursor_before, True)))}")
    return conditions


def _query_value(value: Any, info: FieldInfo) -> str:
    """A filter value as query text, or ValueError when it does not mean exactly one number
    (of the field's kind) or one whole-second moment."""
    if info.source_type in NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("not a number")
        if info.source_type in INTEGER_TYPES and not isinstance(value, int):
            raise ValueError("an integer field compared with a fraction")
        if isinstance(value, float) and (not math.isfinite(value) or "e" in repr(value)):
            raise ValueError("not a plain decimal")
        return repr(value)
    if info.source_type in DATETIME_TYPES:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("not an ISO date-time") from None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("a date-time filter needs a moment with its UTC offset")
        if value.microsecond:
            raise ValueError("ServiceNow compares whole seconds")
        return _stamp(value)
    raise ValueError(f"{info.source_type} fields are not pushed down")


def filter_condition(spec: FilterSpec, info: FieldInfo) -> str:
    """One pushed-down filter as an encoded-query condition."""
    if spec.operator == "between":
        low, high = spec.value  # type: ignore[misc]
        return f"{info.name}BETWEEN{escape(_query_value(low, info))}@{escape(_query_value(high, info))}"  # noqa: E501
    if spec.operator == "equal_to" and info.source_type in INTEGER_TYPES:
        return f"{info.name}={escape(_query_value(spec.value, info))}"
    op = COMPARISONS.get(spec.operator)
    if op is None:
        raise ConnectorError(f"filter on {spec.field} ({spec.operator}) cannot be pushed down")
    return f"{info.name}{op}{escape(_query_value(spec.value, info))}"


class ServiceNowClient:
    """An open session to one ServiceNow instance: its tables as typed Polars pages."""

    def __init__(
        self, connection: str, root: str, auth: Any, retry: RetryPolicy, session: requests.Session
    ):
        self.connection = connection
        self.root = root
        self.auth = auth
        self.http = _HeaderKeepingHttp(
            base_url=root, auth=auth, retry=retry, describe_error=describe_error, session=session
        )
        self._schemas: dict[str, ObjectSchema] = {}

    def _get(self, path_or_url: str, parse=parse_json, **kwargs: Any) -> Any:
        try:
            return self.http.request("GET", path_or_url, parse=parse, **kwargs)
        except AuthError:
            raise
        except ConnectorError as exc:
            if status_of(exc) == 401:
                raise AuthError(
                    f"connection '{self.connection}': ServiceNow refused the credentials "
                    f"({exc}); check the user name and password (environment variables)"
                ) from None
            if status_of(exc) == 403:
                raise AuthError(
                    f"connection '{self.connection}': not allowed ({exc}); the user needs read "
                    "access (ACLs) to the table and to sys_db_object and sys_dictionary"
                ) from None
            raise

    def _rows(self, table: str, query: str, fields: str, limit: int = MAX_LIMIT) -> list[dict]:
        """A small metadata read (sys_db_object, sys_dictionary), every page of it."""
        rows: list[dict] = []
        offset = 0
        while True:
            body = self._get(TABLE_PATH + table, params={
                "sysparm_query": query, "sysparm_fields": fields, "sysparm_limit": limit,
                "sysparm_offset": offset, "sysparm_display_value": "false",
                "sysparm_exclude_reference_link": "true",
            })  # fmt: skip
            result = body.get("result") if isinstance(body, dict) else None
            if not isinstance(result, list):
                raise MalformedResponse(f"connection '{self.connection}': {table} has no result")
            rows += result
            if len(result) < limit:
                return rows
            offset += limit

    def check(self) -> None:
        self._get(TABLE_PATH + "sys_db_object",
                  params={"sysparm_limit": 1, "sysparm_fields": "name"})  # fmt: skip

    def list_objects(self) -> list[str]:
        rows = self._rows("sys_db_object", "ORDERBYname", "name")
        return sorted({r["name"] for r in rows if r.get("name")})

    def _lineage(self, table: str) -> list[str]:
        """The table and the tables it extends, nearest first (through sys_db_object)."""
        if not _NAME.match(table):
            raise UnknownObject(f"'{table}' is not a ServiceNow table name")
        names: list[str] = []
        query = f"name={table}"
        while query:
            rows = self._rows("sys_db_object", query, "name,super_class")
            if not rows:
                if not names:
                    raise UnknownObject(
                        f"'{table}' is not a table of connection '{self.connection}'"
                        f"{did_you_mean(table, ('incident', 'change_request', 'problem'))}"
                    )
                break
            names.append(rows[0]["name"])
            parent = rows[0].get("super_class") or ""
            query = f"sys_id={escape(parent)}" if parent and len(names) < 20 else ""
        return names

    def describe(self, object_name: str) -> ObjectSchema:
        if object_name in self._schemas:
            return self._schemas[object_name]
        lineage = self._lineage(object_name)
        rows = self._rows("sys_dictionary", f"nameIN{','.join(lineage)}^elementISNOTEMPTY",
                          "name,element,internal_type")  # fmt: skip
        depth = {name: i for i, name in enumerate(lineage)}
        fields: dict[str, FieldInfo] = {}
        # The nearest table's entry wins (a child may override its parent's field).
        for row in sorted(rows, key=lambda r: -depth.get(r.get("name"), 0)):
            name, kind = row.get("element"), row.get("internal_type") or "string"
            if not name or not _NAME.match(name):
                continue
            fields[name] = FieldInfo(
                name, kind, DTYPES.get(kind, pl.String()), nillable=name != "sys_id",
                filterable=kind in NUMBER_TYPES or kind in DATETIME_TYPES,
            )  # fmt: skip
        if "sys_id" not in fields:
            raise MalformedResponse(
                f"connection '{self.connection}': the dictionary of {object_name} has no sys_id"
            )
        schema = ObjectSchema(object_name, dict(sorted(fields.items())))
        self._schemas[object_name] = schema
        return schema

    def can_push_down(self, spec: FilterSpec, info: FieldInfo) -> bool:
        """Comparisons of numbers and whole-second date-times; integer equality."""
        if spec.operator == "equal_to":
            if info.source_type not in INTEGER_TYPES:
                return False
        elif spec.operator not in COMPARISONS:
            return False
        values = spec.value if isinstance(spec.value, list) else [spec.value]
        try:
            [_query_value(v, info) for v in values]
        except ValueError:
            return False
        return True

    def read(self, request: ReadRequest) -> Iterator[pl.DataFrame]:
        """Typed pages in cursor order (else sys_id order), filtered to the request's window."""
        if request.include_deleted:
            raise ConnectorError(
                f"connection '{self.connection}': ServiceNow moves deleted records out of "
                f"{request.object} (to sys_audit_delete); drop include_deleted"
            )
        schema = self.describe(request.object)
        schema.require(request.fields)
        order = ["sys_id"]
        if request.cursor_field is not None:
            info = schema.require([request.cursor_field], where="source.incremental.cursor_field")
            if info[0].dtype != _TIME:
                raise ConnectorError(
                    f"{request.object}.{request.cursor_field} is not a glide_date_time; an "
                    "incremental cursor on ServiceNow is sys_updated_on (or another date-time)"
                )
            order = [request.cursor_field, "sys_id"]
        filters = [filter_condition(f, schema.fields[f.field]) for f in request.filters]
        query = encoded_query([*cursor_conditions(request), *filters], order)
        needed = list(dict.fromkeys(["sys_id", *request.fields]
                                    + ([request.cursor_field] if request.cursor_field else [])))  # fmt: skip
        parser = PageParser(request.object, schema, needed)
        limit = min(request.page_size or DEFAULT_LIMIT, MAX_LIMIT)
        first = {
            "sysparm_query": query, "sysparm_fields": ",".join(needed),
            "sysparm_limit": limit, "sysparm_offset": 0, "sysparm_display_value": "false",
            "sysparm_exclude_reference_link": "true", "sysparm_no_count": "false",
        }  # fmt: skip
        window = request.cursor_window()
        for page in paginate(self._fetcher(parser), (1, first), _next_page(limit)):
            frame = page.frame if window is None else page.frame.filter(window)
            yield frame.select(request.fields)

    def _fetcher(self, parser: PageParser):
        path = TABLE_PATH + parser.table

        def fetch(state: tuple[int, Any]) -> Page:
            number, where = state
            parse = lambda b: parser.parse(b, number)  # noqa: E731
            if isinstance(where, Mapping):
                frame = self._get(path, parse=parse, params=where)
            else:
                frame = self._get(where, parse=parse)
            return Page(number, frame, next_link(self.http.last_headers),
                        "link" in {k.lower() for k in self.http.last_headers}, where)  # fmt: skip

        return fetch


@dataclass(frozen=True)
class Page:
    number: int
    frame: pl.DataFrame
    next_url: str | None  # the Link header's rel="next"
    linked: bool  # whether the answer had a Link header at all
    where: Any  # the params (or URL) it was fetched with


def _next_page(limit: int):
    def next_of(state: tuple[int, Any], page: Page) -> tuple[int, Any] | None:
        if page.linked:  # ServiceNow's own word: a Link without rel="next" is the last page
            return (page.number + 1, page.next_url) if page.next_url else None
        if page.frame.height < limit or not isinstance(page.where, Mapping):
            return None
        where = dict(page.where)
        where["sysparm_offset"] = int(where["sysparm_offset"]) + limit
        return page.number + 1, where

    return next_of


class PageParser:
    """One Table API answer's bytes -> a typed frame: every value arrives as text and is cast
    to its dictionary type; a value that does not cast is named with its page, record and
    field (never the value)."""

    def __init__(self, table: str, schema: ObjectSchema, names: list[str]):
        self.table = table
        self.infos = [schema.fields[n] for n in names]
        self.wire = pl.Schema({i.name: pl.String() for i in self.infos})

    def parse(self, body: bytes, number: int) -> pl.DataFrame:
        where = f"page {number} of {self.table}"
        try:
            envelope = pl.read_json(io.BytesIO(body),
                                    schema={"result": pl.List(pl.Struct(self.wire))})  # fmt: skip
        except pl.exceptions.PolarsError:
            raise MalformedResponse(explain_page(
                body, where, "result", self.infos, fits=text_fits,
                record_id=lambda r: r.get("sys_id", "?"), answer="a Table API answer",
                expected=lambda _: "text (sysparm_display_value=false, "
                "sysparm_exclude_reference_link=true)",
            )) from None  # fmt: skip
        if envelope.height != 1 or envelope["result"][0] is None:
            raise MalformedResponse(f"{where} has no 'result' list")
        records = envelope["result"][0]
        raw = records.struct.unnest() if len(records) else pl.DataFrame(schema=self.wire)
        text = raw.with_columns(
            pl.when(pl.col(i.name) != "").then(pl.col(i.name)).alias(i.name) for i in self.infos
        )
        typed = text.select(_cast(i) for i in self.infos)
        if typed["sys_id"].null_count():
            raise MalformedResponse(f"{where}: a record has no sys_id")
        for info in self.infos:
            if info.dtype == pl.String():
                continue
            bad = text.filter(typed[info.name].is_null() & text[info.name].is_not_null())
            if bad.height:
                raise MalformedResponse(
                    f"{where}: record {bad['sys_id'][0]}: field {info.name} is not a valid "
                    f"{info.source_type}"
                )
        return typed


def _cast(info: FieldInfo) -> pl.Expr:
    col = pl.col(info.name)
    if info.dtype == _TIME:
        return col.str.to_datetime(TIME_FORMAT, time_unit="us", time_zone="UTC", strict=False)
    if info.dtype == pl.Date():
        return col.str.to_date("%Y-%m-%d", strict=False)
    if info.dtype == pl.Boolean():
        return col.replace_strict({"true": True, "false": False}, default=None,
                                  return_dtype=pl.Boolean)  # fmt: skip
    if info.dtype in (pl.Int64(), pl.Float64()):
        return col.cast(info.dtype, strict=False)
    return col
