"""HubSpot source over its CRM v3 API: properties for describe, list paging for full reads,
search by a modification stamp for incremental ones (re-queried past its 10,000-result cap)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime
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
from flow_assets.connectors.malformed import explain_page, text_fits
from flow_assets.connectors.oauth import OAuth2
from flow_assets.connectors.oauth_bootstrap import AuthorizationCodeApp
from flow_assets.connectors.paging import paginate
from flow_assets.connectors.static_auth import StaticAuth
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import FilterSpec

OBJECTS = ("contacts", "companies", "deals")
LIST_MAX_LIMIT = 100  # GET /crm/v3/objects/{object}: at most 100 records a page
SEARCH_MAX_LIMIT = 200  # POST /crm/v3/objects/{object}/search: at most 200 a page
SEARCH_RESULT_CAP = 10_000  # one search query pages through at most 10,000 results
MAX_FILTERS_PER_GROUP = 10
DEFAULT_CURSOR = "hs_lastmodifieddate"

# HubSpot property types -> Polars dtypes; enumeration, string and phone_number stay text.
DTYPES: dict[str, pl.DataType] = {
    "number": pl.Float64(),
    "datetime": pl.Datetime("us", "UTC"),
    "date": pl.Date(),
    "bool": pl.Boolean(),
}
# The search operators that mean exactly what the local filter means, on the property types
# where they do. Text stays local: HubSpot compares text without regard to case; NEQ and
# NOT_IN also match records without a value, where the local filter drops them.
SEARCH_OPERATORS = {
    "equal_to": "EQ",
    "less_than": "LT",
    "less_than_or_equal_to": "LTE",
    "greater_than": "GT",
    "greater_than_or_equal_to": "GTE",
    "between": "BETWEEN",
}
PUSHABLE_TYPES = ("number", "datetime", "date")


class HubSpotConnection(dg.ConfigurableResource):
    """A HubSpot account reached with a private app's access token or an OAuth app's refresh
    token."""

    base_url: str = Field(
        "https://api.hubapi.com", description="The API root (a sandbox URL in tests)."
    )
    access_token: str | None = Field(
        None, description="A private app's access token (an EnvVar); or use the OAuth fields."
    )
    client_id: str | None = Field(None, description="The OAuth app's client id.")
    client_secret: str | None = Field(
        None, description="The OAuth app's client secret (an EnvVar)."
    )
    refresh_token: str | None = Field(None, description="The OAuth refresh token (an EnvVar).")
    connection_name: str = Field("hubspot", description="Named in error messages.")
    max_attempts: int = Field(6, ge=1, description="Attempts per call on 429, 5xx and resets.")

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("access_token", "client_secret", "refresh_token")
    # `flowbridge oauth` (the authorization-code grant of a public app). The authorize page is
    # on app.hubspot.com for the real API; any other base_url (a sandbox) serves both the
    # authorize page and the token endpoint itself. The scopes must equal the app's required
    # scopes (--scope overrides these); HubSpot refuses IP addresses in redirect URLs.
    OAUTH_AUTHORIZE_URL: ClassVar[str] = "https://app.hubspot.com/oauth/authorize"
    OAUTH_SCOPES: ClassVar[tuple[str, ...]] = (
        "oauth", "crm.objects.contacts.read", "crm.objects.companies.read",
        "crm.objects.deals.read",
    )  # fmt: skip

    def authorization_code_app(self) -> AuthorizationCodeApp:
        if not (self.client_id and self.client_secret):
            raise ConnectorError(f"connection '{self.connection_name}': the authorization-code "
                                 "grant needs client_id and client_secret (the app's Auth "
                                 "settings)")  # fmt: skip
        root = self.base_url.rstrip("/")
        public = root == "https://api.hubapi.com"
        return AuthorizationCodeApp(
            authorize_url=self.OAUTH_AUTHORIZE_URL if public else root + "/oauth/authorize",
            token_url=root + "/oauth/v1/token", client_id=self.client_id,
            client_secret=self.client_secret, scopes=self.OAUTH_SCOPES, pkce=True,
            redirect_host="localhost",
        )  # fmt: skip

    def open(self, max_attempts: int | None = None) -> HubSpotClient:
        retry = RetryPolicy(max_attempts=max_attempts or self.max_attempts)
        session = requests.Session()
        oauth = (self.client_id, self.client_secret, self.refresh_token)
        auth: StaticAuth | HubSpotOAuth
        if self.access_token and not any(oauth):
            auth = StaticAuth.bearer(self.access_token)
        elif all(oauth) and not self.access_token:
            auth = HubSpotOAuth(
                token_url=self.base_url.rstrip("/") + "/oauth/v1/token",
                grant={"grant_type": "refresh_token", "client_id": self.client_id,
                       "client_secret": self.client_secret, "refresh_token": self.refresh_token},
                connection=self.connection_name, retry=retry, session=session,
            )  # fmt: skip
        else:
            raise ConnectorError(
                f"connection '{self.connection_name}': set either access_token (a private app) "
                "or client_id, client_secret and refresh_token (an OAuth app), not both"
            )
        return HubSpotClient(self.connection_name, self.base_url, auth, retry, session)


class HubSpotOAuth(OAuth2):
    """OAuth refresh-token grant; only a 401 whose category is EXPIRED_AUTHENTICATION
    asks for a new access token (any other 401 is a verdict on the credentials)."""

    def is_expired(self, answer: Answer) -> bool:
        return answer.status_code == 401 and _category(answer) == "EXPIRED_AUTHENTICATION"


def _category(answer: Answer) -> str | None:
    try:
        body = json.loads(answer.body)
    except ValueError:
        return None
    return body.get("category") if isinstance(body, dict) else None


def describe_error(answer: Answer) -> str:
    """HubSpot's error body is {status, message, correlationId, category} (rate limits:
    errorType and policyName); show those, never the request."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return answer.text[:200]
    if not isinstance(body, dict):
        return answer.text[:200]
    kind = body.get("category") or body.get("errorType") or body.get("status") or "error"
    text = f"{kind}: {body.get('message', '').strip()}"
    if body.get("policyName"):
        text += f" (policy {body['policyName']})"
    if body.get("correlationId"):
        text += f" [correlationId {body['correlationId']}]"
    return text


class HubSpotClient:
    """An open session to one HubSpot account: describe objects, read them as typed pages."""

    def __init__(
        self,
        connection: str,
        base_url: str,
        auth: StaticAuth | HubSpotOAuth,
        retry: RetryPolicy,
        session: requests.Session,
    ):
        self.connection = connection
        self.auth = auth
        self.http = HttpClient(
            base_url=base_url, auth=auth, retry=retry, describe_error=describe_error,
            session=session,
        )  # fmt: skip
        self._schemas: dict[str, ObjectSchema] = {}

    def _call(self, method: str, path: str, parse: Any = parse_json, **kwargs: Any) -> Any:
        try:
            return self.http.request(method, path, parse=parse, **kwargs)
        except TransientError as exc:
            if "policy DAILY" in str(exc):
                raise RateLimitExceeded(
                    f"connection '{self.connection}': HubSpot's daily API limit is used up "
                    f"({exc}); it resets at midnight in the account's time zone"
                ) from None
            raise

    def check(self) -> None:
        try:
            self.auth.refresh()
            self._call("GET", "/crm/v3/objects/contacts", params={"limit": 1})
        except AuthError:
            raise
        except ConnectorError as exc:
            if status_of(exc) in (401, 403):
                raise AuthError(
                    f"connection '{self.connection}': HubSpot refused the credentials ({exc}); "
                    "check the access token (environment variable) and its scopes"
                ) from None
            raise

    def list_objects(self) -> list[str]:
        return list(OBJECTS)

    def describe(self, object_name: str) -> ObjectSchema:
        if object_name in self._schemas:
            return self._schemas[object_name]
        if object_name not in OBJECTS:
            raise UnknownObject(
                f"'{object_name}' is not an object of connection '{self.connection}'"
                f"{did_you_mean(object_name, OBJECTS)}; objects: {', '.join(OBJECTS)}"
            )
        body = self._call("GET", f"/crm/v3/properties/{object_name}")
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise MalformedResponse(f"the properties of {object_name} are not a list answer")
        fields = {
            "id": FieldInfo("id", "id", pl.String(), nillable=False, filterable=False),
            "archived": FieldInfo("archived", "bool", pl.Boolean(), nillable=False,
                                  filterable=False),
        }  # fmt: skip
        for prop in results:
            name, kind = prop.get("name"), prop.get("type")
            if not name or name in fields:
                continue
            fields[name] = FieldInfo(name, kind or "string", DTYPES.get(kind, pl.String()))
        schema = ObjectSchema(name=object_name, fields=fields, deleted_when=("archived", True))
        self._schemas[object_name] = schema
        return schema

    def can_push_down(self, spec: FilterSpec, info: FieldInfo) -> bool:
        """Only comparisons of numbers and dates, with values that mean one moment."""
        if info.source_type not in PUSHABLE_TYPES or spec.operator not in SEARCH_OPERATORS:
            return False
        values = spec.value if isinstance(spec.value, list) else [spec.value]
        try:
            [_filter_value(v, info) for v in values]
        except ValueError:
            return False
        return True

    # --- reading -------------------------------------------------------------------

    def read(self, request: ReadRequest) -> Iterator[pl.DataFrame]:
        """Typed pages: the list endpoint for a full read; the search endpoint (ordered by the
        cursor, default hs_lastmodifieddate) when the read has a cursor bound or filters.
        With include_deleted, archived records follow from the list endpoint."""
        schema = self.describe(request.object)
        infos = schema.require(request.fields)
        bounded = request.cursor_field and (
            request.cursor_after or request.cursor_from or request.cursor_before
        )
        if bounded or request.filters:
            yield from self._search_pages(request, schema, infos)
        else:
            yield from self._list_pages(request, infos, archived=False)
        if request.include_deleted:
            local = self._local_bounds(request, schema)
            for page in self._list_pages(request, infos, archived=True):
                yield page.filter(local)

    def _list_pages(
        self, request: ReadRequest, infos: list[FieldInfo], archived: bool
    ) -> Iterator[pl.DataFrame]:
        parser = PageParser(request.object, infos, "list" if not archived else "archived list")
        props = ",".join(i.name for i in infos if i.name not in ("id", "archived"))
        limit = min(request.page_size or LIST_MAX_LIMIT, LIST_MAX_LIMIT)
        number = 0

        def fetch(after: str) -> tuple[pl.DataFrame, str | None]:
            nonlocal number
            number += 1
            params = {"limit": limit, "archived": str(archived).lower()}
            params |= {"properties": props} if props else {}
            params |= {"after": after} if after else {}
            return self._call("GET", f"/crm/v3/objects/{request.object}", params=params,
                              parse=lambda b, n=number: parser.parse(b, n))  # fmt: skip

        for frame, _ in paginate(fetch, "", lambda _s, answer: answer[1]):
            yield frame

    def _search_pages(
        self, request: ReadRequest, schema: ObjectSchema, infos: list[FieldInfo]
    ) -> Iterator[pl.DataFrame]:
        """Search ordered by the cursor; when a query reaches the 10,000-result cap, query
        again from the last cursor value seen (>=), skipping the records already read at it."""
        cursor = schema.require([request.cursor_field or DEFAULT_CURSOR], "cursor_field")[0]
        if cursor.source_type != "datetime":
            raise ConnectorError(
                f"{request.object}.{cursor.name} is a {cursor.source_type} property; HubSpot "
                "reads incrementally by a datetime such as hs_lastmodifieddate"
            )
        names = [i.name for i in infos]
        extra = [cursor] if cursor.name not in names else []
        parser = PageParser(request.object, [*infos, *extra], "search")
        filters = [_search_filter(f, schema.fields[f.field]) for f in request.filters]
        bounds = [("GT", request.cursor_after), ("GTE", request.cursor_from),
                  ("LT", request.cursor_before)] if request.cursor_field else []  # fmt: skip
        base = filters + [
            {"propertyName": cursor.name, "operator": op, "value": _millis(v, op)}
            for op, v in bounds if v is not None
        ]  # fmt: skip
        if len(base) + 1 > MAX_FILTERS_PER_GROUP:
            raise ConnectorError(
                f"{request.object}: {len(request.filters)} filters pushed down leave no room in "
                f"HubSpot's {MAX_FILTERS_PER_GROUP} filters per search; filter fewer fields"
            )
        limit = min(request.page_size or SEARCH_MAX_LIMIT, SEARCH_MAX_LIMIT)
        props = [n for n in [*names, *(e.name for e in extra)] if n not in ("id", "archived")]
        restart: datetime | None = None  # re-query from this cursor value (>=)
        seen_at_restart: set[str] = set()
        state = {"number": 0, "count": 0}

        def next_of(_after: str, answer: tuple[pl.DataFrame, str | None]) -> str | None:
            # Stop before paging past the cap (HubSpot answers 400 there): re-query instead.
            return None if state["count"] >= SEARCH_RESULT_CAP else answer[1]

        while True:
            group = base + (
                [{"propertyName": cursor.name, "operator": "GTE", "value": _millis(restart, "GTE")}]
                if restart is not None else []
            )  # fmt: skip
            query = {
                "filterGroups": [{"filters": group}] if group else [],
                "sorts": [{"propertyName": cursor.name, "direction": "ASCENDING"}],
                "properties": props,
                "limit": limit,
            }
            state["count"] = 0
            last: datetime | None = None
            at_last: set[str] = set()

            def fetch(after: str, query: dict = query) -> tuple[pl.DataFrame, str | None]:
                state["number"] += 1
                body = {**query, "after": after} if after else query
                path = f"/crm/v3/objects/{request.object}/search"
                return self._call("POST", path, json=body,
                                  parse=lambda b, n=state["number"]: parser.parse(b, n))  # fmt: skip

            capped = False
            for frame, next_after in paginate(fetch, "", next_of):
                state["count"] += frame.height
                if restart is not None and seen_at_restart:
                    frame = frame.filter(~pl.col("id").is_in(list(seen_at_restart)))
                if frame.height:
                    newest = frame[cursor.name].max()
                    at_newest = frame.filter(pl.col(cursor.name) == newest)["id"].to_list()
                    at_last = set(at_newest) if newest != last else at_last | set(at_newest)
                    last = newest
                capped = state["count"] >= SEARCH_RESULT_CAP and next_after is not None
                yield frame.select(names)
            if not capped:
                return
            if last is None or (restart is not None and last == restart):
                raise ConnectorError(
                    f"{request.object}: more than {SEARCH_RESULT_CAP} records share "
                    f"{cursor.name} = {restart}; HubSpot's search cannot page past them"
                )
            seen_at_restart, restart = at_last, last

    def _local_bounds(self, request: ReadRequest, schema: ObjectSchema) -> pl.Expr:
        """The cursor bounds and pushed filters as a Polars expression, for archived records
        (which the search does not answer)."""
        window = request.cursor_window()
        keep = pl.lit(True) if window is None else window.fill_null(False)
        for spec in request.filters:
            info = schema.fields[spec.field]
            col = pl.col(spec.field)
            if spec.operator == "between":
                low, high = (_local_value(v, info) for v in spec.value)  # type: ignore[union-attr]
                keep = keep & col.is_between(low, high).fill_null(False)
                continue
            op = {"equal_to": "eq", "less_than": "lt", "less_than_or_equal_to": "le",
                  "greater_than": "gt", "greater_than_or_equal_to": "ge"}[spec.operator]  # fmt: skip
            keep = keep & getattr(col, op)(_local_value(spec.value, info)).fill_null(False)
        return keep

    def latest_change(self, request: ReadRequest) -> datetime | None:
        """The newest cursor value among the records `request` would read, from one search
        answering one record (descending); None when there are none."""
        field = request.cursor_field or DEFAULT_CURSOR
        schema = self.describe(request.object)
        info = schema.require([field], f"{request.object} change probe")[0]
        filters = [_search_filter(f, schema.fields[f.field]) for f in request.filters]
        if request.cursor_after is not None:
            filters.append({"propertyName": field, "operator": "GT",
                            "value": _millis(request.cursor_after, "GT")})  # fmt: skip
        query = {
            "filterGroups": [{"filters": filters}] if filters else [],
            "sorts": [{"propertyName": field, "direction": "DESCENDING"}],
            "properties": [field],
            "limit": 1,
        }
        parser = PageParser(request.object, [info], "change probe")
        frame, _ = self._call("POST", f"/crm/v3/objects/{request.object}/search", json=query,
                              parse=lambda b: parser.parse(b, 1))  # fmt: skip
        return frame[field][0] if frame.height else None


def _millis(moment: datetime | None, op: str) -> str:
    """A bound as epoch milliseconds (HubSpot's datetime filter values), rounded so that
    against millisecond stamps the comparison means what it means on the exact value."""
    assert moment is not None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    exact = moment.timestamp() * 1000
    return str(math.floor(exact) if op in ("GT", "LTE") else math.ceil(exact))


def _filter_value(value: Any, info: FieldInfo) -> str:
    """A flow filter's value as a search value, or ValueError when it does not name one
    number or one moment."""
    if info.source_type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("not a number")
        return repr(value)
    if info.source_type == "date":
        # HubSpot stores a date as midnight UTC; only a plain date means one day.
        if isinstance(value, datetime) or not isinstance(value, date | str):
            raise ValueError("a date filter needs a plain date")
        day = value if isinstance(value, date) else date.fromisoformat(value)
        if isinstance(value, str) and len(value) != 10:
            raise ValueError("a date filter needs YYYY-MM-DD")
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    else:
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("a datetime filter needs a moment with its UTC offset")
        moment = value
    if moment.microsecond % 1000:
        raise ValueError("HubSpot compares whole milliseconds")
    return str(int(moment.timestamp() * 1000))


def _local_value(value: Any, info: FieldInfo) -> Any:
    if info.source_type == "number":
        return value
    moment = datetime.fromtimestamp(int(_filter_value(value, info)) / 1000, UTC)
    return moment.date() if info.source_type == "date" else moment


def _search_filter(spec: FilterSpec, info: FieldInfo) -> dict[str, str]:
    op = SEARCH_OPERATORS.get(spec.operator)
    if op is None or info.source_type not in PUSHABLE_TYPES:
        raise ConnectorError(f"filter on {spec.field} ({spec.operator}) cannot be pushed down")
    if op == "BETWEEN":
        low, high = spec.value  # type: ignore[misc]
        return {"propertyName": info.name, "operator": op,
                "value": _filter_value(low, info), "highValue": _filter_value(high, info)}  # fmt: skip
    return {"propertyName": info.name, "operator": op, "value": _filter_value(spec.value, info)}


class PageParser:
    """One list or search answer's bytes -> a typed frame, without a Python object per record.

    Property values arrive as text; each is cast to its property's type, and a value that
    does not cast is reported naming the page, the record and the property (never the value).
    """

    def __init__(self, object_name: str, infos: list[FieldInfo], kind: str):
        self.object_name = object_name
        self.infos = infos
        self.kind = kind
        self.props = [i for i in infos if i.name not in ("id", "archived")]
        record: dict[str, pl.DataType] = {"id": pl.String(), "archived": pl.Boolean()}
        if self.props:
            record["properties"] = pl.Struct({i.name: pl.String for i in self.props})
        self.record = record
        self.envelope = {
            "results": pl.List(pl.Struct(record)),
            "paging": pl.Struct({"next": pl.Struct({"after": pl.String})}),
        }

    def parse(self, body: bytes, number: int) -> tuple[pl.DataFrame, str | None]:
        where = f"{self.kind} page {number} of {self.object_name}"
        try:
            envelope = pl.read_json(io.BytesIO(body), schema=self.envelope)
        except pl.exceptions.PolarsError:
            raise MalformedResponse(explain_page(
                body, where, "results", self.props, fits=text_fits,
                values=lambda r: r.get("properties") or {}, answer="a CRM answer",
                expected=lambda _: "text",
            )) from None  # fmt: skip
        if envelope.height != 1 or envelope["results"][0] is None:
            raise MalformedResponse(f"{where} has no 'results' list")
        after = envelope["paging"].struct.field("next").struct.field("after")[0]
        records = envelope["results"][0]
        raw = records.struct.unnest() if len(records) else pl.DataFrame(schema=self.record)
        if self.props:
            raw = pl.concat([raw.drop("properties"), raw["properties"].struct.unnest()],
                            how="horizontal")  # fmt: skip
        text = raw.with_columns(
            pl.when(pl.col(i.name) != "").then(pl.col(i.name)).alias(i.name) for i in self.props
        )
        typed = text.select(
            pl.col("id"), pl.col("archived"), *(_cast(i) for i in self.props)
        ).select([i.name for i in self.infos])
        self._check(text, typed, where)
        return typed, after or None

    def _check(self, text: pl.DataFrame, typed: pl.DataFrame, where: str) -> None:
        if typed["id"].null_count():
            raise MalformedResponse(f"{where}: a record has no id")
        for info in self.props:
            if info.dtype == pl.String():
                continue
            bad = text.filter(typed[info.name].is_null() & text[info.name].is_not_null())
            if bad.height:
                raise MalformedResponse(
                    f"{where}: record {bad['id'][0]}: property {info.name} is not a valid "
                    f"{info.source_type}"
                )


def _cast(info: FieldInfo) -> pl.Expr:
    col = pl.col(info.name)
    digits = col.str.contains(r"^-?\d+$")
    if info.source_type == "number":
        return col.cast(pl.Float64, strict=False).alias(info.name)
    if info.source_type == "bool":
        return col.replace_strict({"true": True, "false": False}, default=None,
                                  return_dtype=pl.Boolean).alias(info.name)  # fmt: skip
    if info.source_type in ("datetime", "date"):
        # ISO 8601, or epoch milliseconds (some endpoints write dates that way).
        from_millis = (
            pl.when(digits)
            .then(col.cast(pl.Int64, strict=False))
            .cast(pl.Datetime("ms"))
            .dt.replace_time_zone("UTC")
            .dt.cast_time_unit("us")
        )
        iso = col.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
        moment = pl.coalesce(from_millis, iso)
        if info.source_type == "date":
            moment = pl.coalesce(from_millis.dt.date(), col.str.to_date("%Y-%m-%d", strict=False))
        return moment.alias(info.name)
    return col.alias(info.name)
