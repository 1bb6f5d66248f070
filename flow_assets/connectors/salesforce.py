"""Salesforce source over its documented REST API: OAuth 2.0, describe, SOQL with paging."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import dagster as dg
import polars as pl
import requests
from pydantic import Field

from flow_assets.connectors.base import FieldInfo, ObjectSchema, ReadRequest
from flow_assets.connectors.errors import (
    ConnectorError,
    MalformedResponse,
    RateLimitExceeded,
    UnknownObject,
)
from flow_assets.connectors.http import HttpClient, RetryPolicy, parse_json
from flow_assets.connectors.oauth import OAuth2
from flow_assets.connectors.prefetch import prefetched
from flow_assets.connectors.salesforce_soql import build_soql, can_push_down
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.models import FilterSpec

MAX_BATCH_SIZE = 2000  # Salesforce's largest query batch

# Salesforce field types -> Polars dtypes. Compound types (address, location) are not readable
# as one column; their components are ordinary fields.
DTYPES: dict[str, pl.DataType] = {
    "boolean": pl.Boolean(),
    "int": pl.Int64(),
    "long": pl.Int64(),
    "double": pl.Float64(),
    "currency": pl.Float64(),
    "percent": pl.Float64(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us", "UTC"),
}
COMPOUND_TYPES = {"address", "location"}
STRING_LIKE = {
    "id", "reference", "string", "picklist", "multipicklist", "textarea", "email", "phone", "url",
    "combobox", "encryptedstring", "time", "base64", "anyType",
}  # fmt: skip
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%z"  # 2024-03-01T12:00:00.000+0000


class SalesforceConnection(dg.ConfigurableResource):
    """A Salesforce org reached through its REST API with an OAuth 2.0 connected app."""

    login_url: str = Field(
        description="https://login.salesforce.com, https://test.salesforce.com or a My Domain URL"
    )
    auth_flow: Literal["client_credentials", "refresh_token", "password"] = Field(
        "client_credentials", description="The OAuth 2.0 grant the connected app allows."
    )
    client_id: str = Field(description="The connected app's consumer key.")
    client_secret: str = Field(description="The connected app's consumer secret (an EnvVar).")
    refresh_token: str | None = Field(None, description="For auth_flow refresh_token (an EnvVar).")
    username: str | None = Field(None, description="For auth_flow password.")
    password: str | None = Field(None, description="For auth_flow password (an EnvVar).")
    api_version: str = Field("59.0", pattern=r"^\d+\.\d$")
    connection_name: str = Field("salesforce", description="Named in error messages.")
    max_attempts: int = Field(6, ge=1, description="Attempts per call on 429, 5xx and resets.")

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("client_secret", "refresh_token", "password")

    def open(self, max_attempts: int | None = None) -> SalesforceClient:
        grant = {"grant_type": self.auth_flow, "client_id": self.client_id}
        grant["client_secret"] = self.client_secret
        if self.auth_flow == "refresh_token":
            grant["refresh_token"] = _required(self.refresh_token, "refresh_token", self)
        elif self.auth_flow == "password":
            grant["username"] = _required(self.username, "username", self)
            grant["password"] = _required(self.password, "password", self)
        retry = RetryPolicy(max_attempts=max_attempts or self.max_attempts)
        session = requests.Session()
        auth = OAuth2(
            token_url=self.login_url.rstrip("/") + "/services/oauth2/token",
            grant=grant,
            connection=self.connection_name,
            retry=retry,
            session=session,
        )
        return SalesforceClient(self.connection_name, self.api_version, auth, retry, session)


def _required(value: str | None, name: str, conn: SalesforceConnection) -> str:
    if not value:
        raise ConnectorError(
            f"connection '{conn.connection_name}': auth_flow '{conn.auth_flow}' needs {name}"
        )
    return value


def describe_error(response: requests.Response) -> str:
    """Salesforce's error body is [{"message", "errorCode"}]; show the codes and messages."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, list):
        return "; ".join(f"{e.get('errorCode')}: {e.get('message', '').strip()}" for e in body)
    if isinstance(body, dict) and "error" in body:
        return f"{body['error']}: {body.get('error_description', '')}"
    return response.text[:200]


class SalesforceClient:
    """An open session to one org: describe objects and read them as typed Polars pages."""

    def __init__(
        self,
        connection: str,
        api_version: str,
        auth: OAuth2,
        retry: RetryPolicy,
        session: requests.Session,
    ):
        self.connection = connection
        self.api_version = api_version
        self.auth = auth
        self.http = HttpClient(
            base_url="", auth=auth, retry=retry, describe_error=describe_error, session=session
        )
        self._schemas: dict[str, ObjectSchema] = {}

    @property
    def data_path(self) -> str:
        return f"/services/data/v{self.api_version}"

    def _base(self) -> str:
        if self.auth.access_token is None:
            self.auth.refresh()
        instance = self.auth.token_response.get("instance_url")
        if not instance:
            raise MalformedResponse(
                f"connection '{self.connection}': the token answer has no instance_url"
            )
        return instance.rstrip("/")

    def _get(self, path: str, parse=parse_json, **kwargs: Any) -> Any:
        try:
            return self.http.request("GET", self._base() + path, parse=parse, **kwargs)
        except ConnectorError as exc:
            if "REQUEST_LIMIT_EXCEEDED" in str(exc):
                raise RateLimitExceeded(
                    f"connection '{self.connection}': Salesforce's API request limit is used up "
                    f"({exc}); wait for the 24-hour window to roll or raise the org's limit"
                ) from None
            raise

    def check(self) -> None:
        self.auth.refresh()
        self._get(f"{self.data_path}/limits/")

    def list_objects(self) -> list[str]:
        body = self._get(f"{self.data_path}/sobjects/")
        return sorted(o["name"] for o in body.get("sobjects", []) if o.get("queryable", True))

    def describe(self, object_name: str) -> ObjectSchema:
        if object_name in self._schemas:
            return self._schemas[object_name]
        try:
            body = self._get(f"{self.data_path}/sobjects/{object_name}/describe/")
        except ConnectorError as exc:
            if "NOT_FOUND" not in str(exc):
                raise
            names = self.list_objects()
            raise UnknownObject(
                f"'{object_name}' is not an object of connection '{self.connection}'"
                f"{did_you_mean(object_name, names)}"
            ) from None
        fields = {}
        for f in body.get("fields", []):
            kind = f.get("type")
            if kind in COMPOUND_TYPES:
                continue
            fields[f["name"]] = FieldInfo(
                name=f["name"],
                source_type=kind,
                dtype=DTYPES.get(kind, pl.String()),
                nillable=bool(f.get("nillable", True)),
                filterable=bool(f.get("filterable", True)),
            )
        schema = ObjectSchema(name=body.get("name", object_name), fields=fields)
        self._schemas[object_name] = schema
        return schema

    def can_push_down(self, spec: FilterSpec, info: FieldInfo) -> bool:
        return can_push_down(spec, info)

    def read(self, request: ReadRequest) -> Iterator[pl.DataFrame]:
        """Typed pages of the query's records; the next page is fetched while this one is used."""
        schema = self.describe(request.object)
        infos = schema.require(request.fields)
        soql = build_soql(request, schema)
        page_size = min(request.page_size or MAX_BATCH_SIZE, MAX_BATCH_SIZE)
        parser = PageParser(request.object, infos)
        headers = {"Sforce-Query-Options": f"batchSize={page_size}"}
        first = (f"{self.data_path}/query/", {"q": soql})
        yield from (page.frame for page in prefetched(self._pages(first, parser, headers)))

    def _pages(self, first: tuple[str, dict], parser: PageParser, headers: dict) -> Iterator[Page]:
        path, params = first
        number = 1
        while True:
            page: Page = self._get(
                path, parse=lambda body, n=number: parser.parse(body, n), params=params,
                headers=headers,
            )  # fmt: skip
            yield page
            if page.done or not page.next_url:
                return
            path, params, number = page.next_url, None, number + 1


@dataclass
class Page:
    number: int
    frame: pl.DataFrame
    total_size: int
    done: bool
    next_url: str | None


class PageParser:
    """Turns one query answer's bytes into a typed frame without a Python object per record."""

    def __init__(self, object_name: str, infos: list[FieldInfo]):
        self.object_name = object_name
        self.infos = infos
        # Dates and datetimes arrive as strings; they are parsed after reading, with a check.
        self.wire = pl.Schema(
            {i.name: pl.String() if i.dtype.is_temporal() else i.dtype for i in infos}
        )
        self.envelope = {
            "totalSize": pl.Int64,
            "done": pl.Boolean,
            "nextRecordsUrl": pl.String,
            "records": pl.List(pl.Struct(self.wire)),
        }

    def parse(self, body: bytes, number: int) -> Page:
        try:
            envelope = pl.read_json(io.BytesIO(body), schema=self.envelope)
        except pl.exceptions.PolarsError:
            raise MalformedResponse(self._explain(body, number)) from None
        if envelope.height != 1 or envelope["done"][0] is None:
            raise MalformedResponse(f"page {number} of {self.object_name} has no 'done' flag")
        records = envelope["records"][0]
        if records is None:
            raise MalformedResponse(f"page {number} of {self.object_name} has no 'records' list")
        frame = records.struct.unnest() if len(records) else pl.DataFrame(schema=self.wire)
        return Page(
            number=number,
            frame=self._typed(frame, number),
            total_size=int(envelope["totalSize"][0] or 0),
            done=bool(envelope["done"][0]),
            next_url=envelope["nextRecordsUrl"][0],
        )

    def _typed(self, frame: pl.DataFrame, number: int) -> pl.DataFrame:
        casts = [
            _parse_temporal(frame[i.name], i.source_type)
            for i in self.infos
            if i.source_type in ("date", "datetime")
        ]
        if not casts:
            return frame
        typed = frame.with_columns(casts)
        for parsed in casts:
            bad = typed.filter(pl.col(parsed.name).is_null() & frame[parsed.name].is_not_null())
            if bad.height:
                record = bad["Id"][0] if "Id" in bad.columns else f"#{bad.height}"
                kind = next(i.source_type for i in self.infos if i.name == parsed.name)
                raise MalformedResponse(
                    f"page {number} of {self.object_name}: record {record}: field {parsed.name} "
                    f"is not a valid {kind}"
                )
        return typed

    def _explain(self, body: bytes, number: int) -> str:
        """Find what is wrong with an answer, naming the record and field, never the value."""
        where = f"page {number} of {self.object_name}"
        try:
            doc = json.loads(body)
        except ValueError as exc:
            return f"{where} is not valid JSON ({exc.msg} at character {exc.pos} of {len(body)})"
        if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
            return f"{where} is not a query answer (no 'records' list)"
        for record in doc["records"]:
            if not isinstance(record, dict):
                return f"{where}: a record is not a JSON object"
            for info in self.infos:
                value = record.get(info.name)
                if value is not None and not _fits(value, info):
                    return (
                        f"{where}: record {record.get('Id', '?')}: field {info.name} should be "
                        f"{info.source_type} but is a JSON {type(value).__name__}"
                    )
        return f"{where} does not match the described fields of {self.object_name}"


def _parse_temporal(text: pl.Series, kind: str) -> pl.Series:
    """Salesforce's dates and datetimes; unparseable values become null (and are reported)."""
    if kind == "date":
        return text.str.to_date("%Y-%m-%d", strict=False)
    return text.str.to_datetime(DATETIME_FORMAT, time_zone="UTC", strict=False).dt.cast_time_unit(
        "us"
    )


def _fits(value: Any, info: FieldInfo) -> bool:
    if info.dtype == pl.Boolean():
        return isinstance(value, bool)
    if info.dtype == pl.Int64():
        return isinstance(value, int) and not isinstance(value, bool)
    if info.dtype == pl.Float64():
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)
