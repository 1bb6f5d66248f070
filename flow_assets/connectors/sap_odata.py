"""SAP OData source (v2 and v4): any entity set of an SAP Gateway / S/4HANA OData service, typed
from the service's $metadata, read in pages that follow the server's own paging.

Modelled on S/4HANA's sales order API as the SAP Business Accelerator Hub documents it:
API_SALES_ORDER_SRV (OData v2, /sap/opu/odata/sap/API_SALES_ORDER_SRV: A_SalesOrder,
A_SalesOrderItem) and its OData v4 successor (/sap/opu/odata4/sap/api_salesorder/srvd_a2x/sap/
salesorder/0001: SalesOrder, SalesOrderItem); on [MS-ODATA] (OData 2.0: verbose JSON, URI
literals), OData 4.0 JSON Format and URL Conventions; and on "Date and Time in SAP Gateway
Foundation" (SAP blog, 2017).

- Version: `odata_version` when set, else $metadata's edmx:Edmx Version ("1.0" is OData v2,
  "4.0"/"4.01" v4); a set version that $metadata contradicts is an error.
- Discovery: $metadata (EDMX): EntityContainer/EntitySet, EntityType Key and primitive
  Properties (Name, Type, Nullable; on v2 also sap:filterable and sap:display-format). Parsed
  with xml.etree after refusing any DTD (EDMX has none, and entity expansion needs one), so
  defusedxml, which is not a project dependency, is not needed.
- Types: Byte/SByte/Int16/Int32/Int64 -> Int64; Decimal/Double/Single -> Float64 (like every
  other connector: exact to 15 significant digits, enough for amounts of Precision 16 Scale 3
  below 10^12); Boolean; DateTime/DateTimeOffset -> Datetime(us, UTC), except a v2 DateTime with
  sap:display-format="Date" (SAP's v2 date) -> Date; Date -> Date; everything else
  (String, Guid, Time, TimeOfDay...) text. Complex and collection properties are left out.
- Wire: v2 (`$format=json`) answers {"d": {"results": [...], "__next": url}}, Int64 and Decimal
  as strings, date-times as "/Date(<ms since 1970 UTC>[+-<minutes>])/" (the minutes are the
  zone of a DateTimeOffset, but are added to a DateTime); v4 answers {"value": [...],
  "@odata.nextLink": url} with ISO 8601 date-times, Int64 and Decimal as strings because the
  Accept header asks for IEEE754Compatible=true.
- Paging: windows of `$top` records (page_size, default 1000) in `$orderby` order (cursor, then
  key). Within a window the server may cap its answer and send __next / @odata.nextLink (with a
  $skiptoken): that link is followed as given (same origin only), never computed. An incremental
  read on a single-key entity starts each next window after the last record read (`C gt t or
  (C eq t and Key gt k)`), so records changed during the read cannot shift a record out of
  it; otherwise the next window is `$skip`. Values finer than a microsecond (v4 allows 100 ns)
  can be read twice at a window's edge, never missed.
- $filter: cursor bounds with microseconds (gt cursor_after, ge cursor_from, lt cursor_before) as
  datetimeoffset'...Z' / datetime'...' on v2 and bare ...Z on v4, and the pushed-down filters:
  eq and in (as eq ... or ...) of text or numbers, ne where the property cannot be null (null ne
  x is true in OData), lt/le/gt/ge/between of numbers. Not pushed: date-times, booleans, null
  tests, contains, properties with sap:filterable="false".
- Errors: v2 {"error": {"code", "message": {"lang", "value"}}}, v4 {"error": {"code", "message",
  "details"}}, SAP BTP API Management {"fault": {"faultstring"}}; 401 means refused
  credentials; 429 (Retry-After) and 503 are retried by HttpClient. Only reads: no CSRF token.

Auth: basic (`username` + `password`, e.g. a communication user) or OAuth 2.0 client credentials
(`token_url`, `client_id`, `client_secret`, as an SAP BTP service key gives them), re-granted
when a call answers 401. `sap_client` adds sap-client=NNN to every call.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import dagster as dg
import polars as pl
import requests
from pydantic import Field

from flow_assets.connectors.base import FieldInfo, ObjectSchema, ReadRequest
from flow_assets.connectors.errors import (
    AuthError,
    ConnectorError,
    MalformedResponse,
    UnknownField,
    UnknownObject,
)
from flow_assets.connectors.http import Answer, HttpClient, RetryPolicy, TransientError, status_of
from flow_assets.connectors.malformed import explain_page
from flow_assets.connectors.oauth import OAuth2
from flow_assets.connectors.paging import paginate
from flow_assets.connectors.static_auth import StaticAuth
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import FilterSpec

DEFAULT_TOP = 1000
SAP = "{http://www.sap.com/Protocols/SAPData}"
_TIME = pl.Datetime("us", "UTC")
INTEGERS = ("Edm.Byte", "Edm.SByte", "Edm.Int16", "Edm.Int32", "Edm.Int64")
FRACTIONS = {"Edm.Decimal": "M", "Edm.Double": "d", "Edm.Single": "f"}  # v2 literal suffixes
DTYPES: dict[str, pl.DataType] = {
    **dict.fromkeys(INTEGERS, pl.Int64()), **dict.fromkeys(FRACTIONS, pl.Float64()),
    "Edm.Boolean": pl.Boolean(), "Edm.DateTime": _TIME, "Edm.DateTimeOffset": _TIME,
    "Edm.Date": pl.Date(),
    **dict.fromkeys(("Edm.String", "Edm.Guid", "Edm.Time", "Edm.TimeOfDay", "Edm.Duration"),
                    pl.String()),
}  # fmt: skip
COMPARE = {"equal_to": "eq", "not_equal_to": "ne", "less_than": "lt",
           "less_than_or_equal_to": "le", "greater_than": "gt", "greater_than_or_equal_to": "ge"}  # fmt: skip
ACCEPT = {"2": "application/json", "4": "application/json;IEEE754Compatible=true"}


class SapODataConnection(dg.ConfigurableResource):
    """An SAP OData service (v2 or v4) reached with basic auth or OAuth client credentials."""

    service_url: str = Field(
        description="The service root, e.g. https://HOST/sap/opu/odata/sap/API_SALES_ORDER_SRV"
    )
    odata_version: str | None = Field(
        None, description='"2" or "4"; read from $metadata (edmx Version) when omitted.'
    )
    sap_client: str | None = Field(None, description="sap-client on every call (e.g. 100).")
    username: str | None = Field(None, description="Basic auth: the (communication) user.")
    password: str | None = Field(None, description="Basic auth: its password (an EnvVar).")
    token_url: str | None = Field(None, description="OAuth: the token endpoint (.../oauth/token).")
    client_id: str | None = Field(None, description="OAuth: the client id (a BTP service key's).")
    client_secret: str | None = Field(None, description="OAuth: the client secret (an EnvVar).")
    connection_name: str = Field("sap_odata", description="Named in error messages.")
    max_attempts: int = Field(6, ge=1, description="Attempts per call on 429, 5xx and resets.")

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password", "client_secret")

    def open(self, max_attempts: int | None = None) -> SapODataClient:
        def needs(what: str) -> ConnectorError:
            return ConnectorError(f"connection '{self.connection_name}': {what}")

        if self.odata_version not in (None, "2", "4"):
            raise needs(f'odata_version is "2" or "4", not {self.odata_version!r}')
        retry = RetryPolicy(max_attempts=max_attempts or self.max_attempts)
        session = requests.Session()
        oauth = (self.token_url, self.client_id, self.client_secret)
        if any(oauth) == bool(self.username or self.password):
            raise needs("set username + password (basic) or token_url + client_id + "
                        "client_secret (OAuth client credentials), one of the two")  # fmt: skip
        auth: Any = None
        if any(oauth):
            if not all(oauth):
                raise needs("token_url, client_id and client_secret go together")
            grant = {"grant_type": "client_credentials", "client_id": self.client_id or "",
                     "client_secret": self.client_secret or ""}  # fmt: skip
            auth = OAuth2(self.token_url or "", grant, self.connection_name, retry)
        elif not (self.username and self.password):
            raise needs("username and password go together")
        else:
            auth = StaticAuth.basic(self.username, self.password)
        return SapODataClient(self.connection_name, self.service_url.rstrip("/"),
                              self.odata_version, self.sap_client, auth, retry, session)  # fmt: skip


def describe_error(answer: Answer) -> str:
    """SAP's message from a v2 or v4 error body, API Management's fault, an OAuth error, or text."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return answer.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        message = message.get("value") if isinstance(message, dict) else message  # v2
        text = f"{message} ({error['code']})" if error.get("code") else str(message)
        details = [d["message"] for d in error.get("details") or []
                   if isinstance(d, dict) and d.get("message")]  # fmt: skip
        return "; ".join([text, *details])
    if isinstance(error, str):
        return f"{error}: {body.get('error_description') or ''}".rstrip(": ")
    fault = body.get("fault") if isinstance(body, dict) else None
    if isinstance(fault, dict) and fault.get("faultstring"):
        return str(fault["faultstring"])
    return answer.text[:200]


@dataclass(frozen=True)
class EntitySet:
    schema: ObjectSchema
    keys: tuple[str, ...]


def parse_metadata(body: bytes) -> tuple[str, dict[str, EntitySet]]:
    """The OData version ("2" or "4") and entity sets of an EDMX document."""
    if b"<!DOCTYPE" in body.upper():
        raise MalformedResponse("$metadata declares a DTD, which EDMX never does")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise MalformedResponse(f"$metadata is not XML ({exc})") from None
    local = lambda e: e.tag.rsplit("}", 1)[-1]  # noqa: E731
    edmx_version = root.get("Version", "")
    if local(root) != "Edmx" or not edmx_version.startswith(("1.", "4.")):
        raise MalformedResponse("$metadata is not an EDMX 1.0 or 4.0 document")
    types: dict[str, EntitySet] = {}
    for schema in (e for e in root.iter() if local(e) == "Schema"):
        for entity in (e for e in schema if local(e) == "EntityType"):
            keys = tuple(r.get("Name", "") for r in entity.iter() if local(r) == "PropertyRef")
            fields = {}
            for p in (e for e in entity if local(e) == "Property"):
                name, kind = p.get("Name", ""), p.get("Type", "")
                if kind not in DTYPES:
                    continue  # complex, collection, stream, geography: not a column
                dtype = DTYPES[kind]
                if kind == "Edm.DateTime" and p.get(SAP + "display-format") == "Date":
                    dtype = pl.Date()
                fields[name] = FieldInfo(name, kind, dtype, nillable=p.get("Nullable") != "false",
                                         filterable=p.get(SAP + "filterable") != "false")  # fmt: skip
            entity_set = EntitySet(ObjectSchema(entity.get("Name", ""), fields), keys)
            for prefix in {schema.get("Namespace"), schema.get("Alias")} - {None}:
                types[f"{prefix}.{entity.get('Name')}"] = entity_set
    sets = {}
    for node in (e for e in root.iter() if local(e) == "EntitySet"):
        found = types.get(node.get("EntityType", ""))
        if found is not None and node.get("Name"):
            sets[node.get("Name", "")] = EntitySet(replace(found.schema, name=node.get("Name", "")),
                                                   found.keys)  # fmt: skip
    return ("2" if edmx_version.startswith("1.") else "4"), sets


def literal(value: Any, info: FieldInfo, version: str) -> str:
    """A filter value as an OData URI literal of the property's type, or ValueError when the
    value is not exactly one of that type (text for text, a plain number for a number)."""
    kind = info.source_type
    if isinstance(value, bool) or (kind == "Edm.String") != isinstance(value, str):
        raise ValueError("the value's type does not match the property's")
    if kind == "Edm.String":
        return "'" + value.replace("'", "''") + "'"
    if kind in INTEGERS and isinstance(value, int):
        return f"{value}L" if version == "2" and kind == "Edm.Int64" else str(value)
    if kind in FRACTIONS and isinstance(value, int | float):
        text = repr(value)
        if not math.isfinite(value) or "e" in text:
            raise ValueError("not a plain decimal")
        return text + (FRACTIONS[kind] if version == "2" else "")
    raise ValueError(f"{kind} values are not pushed down")


def moment(value: datetime, info: FieldInfo, version: str) -> str:
    """A date-time as an OData literal, to the microsecond, in UTC."""
    utc = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S.%f")
    if version == "4":
        return text + "Z"
    if info.source_type == "Edm.DateTimeOffset":
        return f"datetimeoffset'{text}Z'"
    return f"datetime'{text}'"  # Edm.DateTime: UTC without an offset


def filter_condition(spec: FilterSpec, info: FieldInfo, version: str) -> str:
    name, op = info.name, spec.operator
    if op == "between":
        low, high = spec.value  # type: ignore[misc]
        return f"({name} ge {literal(low, info, version)} and {name} le {literal(high, info, version)})"  # noqa: E501
    if op == "in":
        return "(" + " or ".join(f"{name} eq {literal(v, info, version)}" for v in spec.value) + ")"  # type: ignore[union-attr]  # noqa: E501
    return f"{name} {COMPARE[op]} {literal(spec.value, info, version)}"


@dataclass(frozen=True)
class Step:
    """Where the next page of a read comes from."""

    number: int = 1  # of the page, for messages
    link: str | None = None  # the server's next link inside the current window
    after: str | None = None  # the keyset condition of the current window
    skip: int = 0  # $skip of the current window
    got: int = 0  # records of the current window so far


@dataclass(frozen=True)
class Page:
    frame: pl.DataFrame
    next_link: str | None


class SapODataClient:
    """An open session to one SAP OData service: its entity sets as typed Polars pages."""

    def __init__(self, connection: str, root: str, version: str | None, sap_client: str | None,
                 auth: Any, retry: RetryPolicy, session: requests.Session):  # fmt: skip
        self.connection, self.root, self.sap_client = connection, root, sap_client
        self.http = HttpClient(base_url=root, auth=auth, retry=retry,
                               describe_error=describe_error, session=session)  # fmt: skip
        self._configured_version = version
        self._metadata: tuple[str, dict[str, EntitySet]] | None = None

    def _get(self, url: str, parse: Any, what: str, **kwargs: Any) -> Any:
        try:
            return self.http.request("GET", url, parse=parse, **kwargs)
        except (AuthError, TransientError):
            raise
        except ConnectorError as exc:
            name = f"connection '{self.connection}'"
            if status_of(exc) == 401:
                raise AuthError(f"{name}: SAP refused the credentials ({exc}); check the user "
                                "and password or the OAuth client (environment variables)") from None  # fmt: skip
            if status_of(exc) == 403:
                raise AuthError(f"{name}: not authorized ({exc}); the user's role (or the "
                                "communication arrangement) must include this service") from None  # fmt: skip
            raise type(exc)(f"{name}: {what}: {exc}") from None

    def _params(self, **params: Any) -> dict[str, Any]:
        return {**params, "sap-client": self.sap_client} if self.sap_client else params

    def metadata(self) -> tuple[str, dict[str, EntitySet]]:
        if self._metadata is None:
            where = f"connection '{self.connection}'"
            version, sets = self._get(self.root + "/$metadata", parse_metadata, "$metadata",
                                      params=self._params(),
                                      headers={"Accept": "application/xml"})  # fmt: skip
            if self._configured_version not in (None, version):
                raise ConnectorError(f"{where}: odata_version is {self._configured_version} but "
                                     f"{self.root}/$metadata describes an OData v{version} service")  # fmt: skip
            self._metadata = version, sets
        return self._metadata

    @property
    def version(self) -> str:
        return self.metadata()[0]

    def check(self) -> None:
        self.metadata()

    def list_objects(self) -> list[str]:
        return sorted(self.metadata()[1])

    def _entity(self, name: str) -> EntitySet:
        sets = self.metadata()[1]
        if name not in sets:
            raise UnknownObject(f"connection '{self.connection}': '{name}' is not an entity set of "
                                f"{self.root}{did_you_mean(name, sets)}")  # fmt: skip
        return sets[name]

    def describe(self, object_name: str) -> ObjectSchema:
        return self._entity(object_name).schema

    def can_push_down(self, spec: FilterSpec, info: FieldInfo) -> bool:
        """eq / in (and ne where null is impossible) of text and numbers; ranges of numbers."""
        op, number = spec.operator, info.source_type in INTEGERS or info.source_type in FRACTIONS
        exact = op in ("equal_to", "in") or (op == "not_equal_to" and not info.nillable)
        ordered = number and op not in ("equal_to", "not_equal_to") and op in (*COMPARE, "between")
        if not info.filterable or not (number or info.source_type == "Edm.String"):
            return False
        if not (exact or ordered):
            return False
        try:
            for value in spec.value if isinstance(spec.value, list) else [spec.value]:
                literal(value, info, "2")
        except ValueError:
            return False
        return True

    def read(self, request: ReadRequest) -> Iterator[pl.DataFrame]:
        """Typed pages in cursor (then key) order, within the request's cursor window."""
        where = f"connection '{self.connection}'"
        if request.include_deleted:
            raise ConnectorError(f"{where}: an OData entity set keeps no deleted records; "
                                 "drop include_deleted")  # fmt: skip
        entity, version = self._entity(request.object), self.version
        try:
            entity.schema.require(request.fields)
            cursor = (entity.schema.require([request.cursor_field],
                                            "source.incremental.cursor_field")[0]
                      if request.cursor_field else None)  # fmt: skip
        except UnknownField as exc:
            raise UnknownField(f"{where}: {exc}") from None
        if cursor is not None and (cursor.dtype != _TIME or not cursor.filterable):
            raise ConnectorError(f"{where}: {request.object}.{cursor.name} ({cursor.source_type}) "
                                 "is not a filterable date-time; an incremental cursor on SAP is "
                                 "one such as LastChangeDateTime")  # fmt: skip
        bounds = [(op, bound) for op, bound in (("gt", request.cursor_after),
                  ("ge", request.cursor_from), ("lt", request.cursor_before))
                  if cursor is not None and bound is not None]  # fmt: skip
        name = cursor.name if cursor else ""
        conditions = [f"{name} {op} {moment(bound, cursor, version)}" for op, bound in bounds]
        conditions += [filter_condition(f, entity.schema.fields[f.field], version)
                       for f in request.filters]  # fmt: skip
        order = [*([name] if cursor else []), *entity.keys]
        needed = list(dict.fromkeys([*entity.keys, *request.fields, *order]))
        parser = PageParser(request.object, entity, needed, version)
        top = request.page_size or DEFAULT_TOP
        key = entity.schema.fields.get(entity.keys[0]) if len(entity.keys) == 1 else None
        keyset = cursor is not None and key is not None and key.source_type in (
            "Edm.String", *INTEGERS)  # fmt: skip

        def fetch(step: Step) -> Page:
            parse = lambda body: parser.parse(body, step.number)  # noqa: E731
            what = request.object
            headers = {"Accept": ACCEPT[version]}
            if step.link is not None:
                client = {} if "sap-client=" in step.link else self._params()
                return Page(*self._get(step.link, parse, what, params=client, headers=headers))
            params = self._params(**{"$select": ",".join(needed), "$top": top,
                                     "$orderby": ",".join(f"{n} asc" for n in order)})  # fmt: skip
            params |= {"$format": "json"} if version == "2" else {}
            params |= {"$skip": step.skip} if step.skip else {}
            window = [*conditions, *([step.after] if step.after else [])]
            params |= {"$filter": " and ".join(window)} if window else {}
            url = f"{self.root}/{request.object}"
            return Page(*self._get(url, parse, what, params=params, headers=headers))

        def next_of(step: Step, page: Page) -> Step | None:
            got = step.got + page.frame.height
            if page.next_link:
                link = self._same_origin(page.next_link)
                if link == step.link:  # a server repeating itself would page forever
                    raise MalformedResponse(f"{where}: {request.object} page {step.number} "
                                            "links to itself as its next page")  # fmt: skip
                return replace(step, number=step.number + 1, link=link, got=got)
            if got < top:
                return None
            if not keyset or page.frame.height == 0:
                return Step(step.number + 1, None, step.after, step.skip + got)
            # the next window starts after the last record read: (cursor, key) > (t, k)
            last = page.frame.row(-1, named=True)
            at, k = moment(last[name], cursor, version), key.name  # type: ignore[arg-type, union-attr]
            after = (
                f"({name} gt {at} or ({name} eq {at} and {k} gt {literal(last[k], key, version)}))"
            )
            return Step(step.number + 1, after=after)

        local = [_compare(pl.col(name), op, bound) for op, bound in bounds]
        for page in paginate(fetch, Step(), next_of):
            frame = page.frame.filter(pl.all_horizontal(local)) if local else page.frame
            yield frame.select(request.fields)

    def _same_origin(self, link: str) -> str:
        """A next link, resolved against the service root; one to another host is refused (it
        would carry the credentials there)."""
        url = urljoin(self.root + "/", link)
        if urlsplit(url)[:2] != urlsplit(self.root)[:2]:
            raise MalformedResponse(f"connection '{self.connection}': the server's next link "
                                    f"leads to another origin ({urlsplit(url).netloc})")  # fmt: skip
        return url


def _compare(col: pl.Expr, op: str, bound: datetime) -> pl.Expr:
    bound = bound if bound.tzinfo else bound.replace(tzinfo=UTC)
    return {"gt": col > bound, "ge": col >= bound, "lt": col < bound}[op]


class PageParser:
    """One answer's bytes -> (a typed frame, the next link): every value is read as text and
    cast to its Edm type; a value that does not cast is named with its page, record key and
    property (never the value)."""

    def __init__(self, entity_set: str, entity: EntitySet, names: list[str], version: str):
        self.where = f"page {{}} of {entity_set}"
        self.infos = [entity.schema.fields[n] for n in names]
        self.keys, self.version = entity.keys, version
        self.wire = pl.Struct({n: pl.String() for n in names})
        records, link = ("results", "__next") if version == "2" else ("value", "@odata.nextLink")
        inner = {records: pl.List(self.wire), link: pl.String()}
        self.envelope = {"d": pl.Struct(inner)} if version == "2" else inner
        self.path = ("d", records, link) if version == "2" else (records, link)

    def parse(self, body: bytes, number: int) -> tuple[pl.DataFrame, str | None]:
        where = self.where.format(number)
        try:
            envelope = pl.read_json(io.BytesIO(body), schema=self.envelope)
        except pl.exceptions.PolarsError:
            raise MalformedResponse(
                _explain(body, where, self.version, self.infos, self.keys)
            ) from None
        if self.version == "2":
            envelope = envelope.select(pl.col("d").struct.unnest())
        records, link = self.path[-2:]
        if envelope.height != 1 or envelope[records][0] is None:
            raise MalformedResponse(f"{where} has no '{'.'.join(self.path[:-1])}' list")
        rows = envelope[records][0]
        text = rows.struct.unnest() if len(rows) else pl.DataFrame(schema=self.wire.to_schema())
        typed = text.select(self._cast(i) for i in self.infos)
        for info in self.infos:
            bad = text.filter(typed[info.name].is_null() & text[info.name].is_not_null())
            if info.name in self.keys and typed[info.name].null_count():
                raise MalformedResponse(f"{where}: a record has no key {info.name}")
            if bad.height:
                key = ", ".join(f"{k}={bad[k][0]}" for k in self.keys)
                raise MalformedResponse(f"{where}: record {key}: {info.name} is not a valid "
                                        f"{info.source_type} ({_shape(self.version, info)})")  # fmt: skip
        return typed, envelope[link][0]

    def _cast(self, info: FieldInfo) -> pl.Expr:
        col, kind = pl.col(info.name), info.source_type
        if self.version == "2" and kind in ("Edm.DateTime", "Edm.DateTimeOffset"):
            ms = col.str.extract(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$", 1).cast(pl.Int64)
            if kind == "Edm.DateTime":  # the offset's minutes are added (MS-ODATA 2.2.6.3.1)
                minutes = col.str.extract(r"^/Date\(-?\d+([+-]\d{4})\)/$", 1).cast(pl.Int64)
                ms = ms + minutes.fill_null(0) * 60_000
            at = pl.from_epoch(ms, "ms").dt.cast_time_unit("us").dt.replace_time_zone("UTC")
            return (at.dt.date() if info.dtype == pl.Date() else at).alias(info.name)
        if info.dtype == _TIME:
            return col.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", time_unit="us",
                                       time_zone="UTC", strict=False)  # fmt: skip
        if info.dtype == pl.Date():
            return col.str.to_date("%Y-%m-%d", strict=False)
        if info.dtype == pl.Boolean():
            return col.replace_strict({"true": True, "false": False}, default=None,
                                      return_dtype=pl.Boolean)  # fmt: skip
        return col.cast(info.dtype, strict=False) if info.dtype != pl.String() else col


def _shape(version: str, info: FieldInfo) -> str:
    if version == "2" and info.dtype in (_TIME, pl.Date()):
        return 'expected "/Date(<milliseconds>)/"'
    return {pl.Boolean(): "expected true or false", pl.Date(): "expected YYYY-MM-DD",
            _TIME: "expected ISO 8601 with an offset"}.get(info.dtype, "expected a number")  # fmt: skip


def _explain(body: bytes, where: str, version: str, infos: list[FieldInfo], keys: tuple) -> str:
    if version == "2":  # the collection is inside "d"
        with contextlib.suppress(ValueError):
            doc = json.loads(body)
            if isinstance(doc, dict) and isinstance(doc.get("d"), dict):
                body = json.dumps(doc["d"]).encode()
    return explain_page(body, where, "results" if version == "2" else "value", infos,
                        fits=lambda value, _: not isinstance(value, dict | list),
                        record_id=lambda r: ",".join(str(r.get(k, "?")) for k in keys),
                        answer=f"an OData v{version} collection",
                        expected=lambda info: f"a primitive {info.source_type}")  # fmt: skip
