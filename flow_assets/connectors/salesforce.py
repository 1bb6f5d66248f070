"""Salesforce source over its documented REST API: OAuth 2.0, describe, SOQL with paging."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
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
from flow_assets.connectors.http import Answer, HttpClient, RetryPolicy, parse_json
from flow_assets.connectors.malformed import explain_page
from flow_assets.connectors.oauth import OAuth2
from flow_assets.connectors.oauth_bootstrap import AuthorizationCodeApp
from flow_assets.connectors.prefetch import prefetched
from flow_assets.connectors.salesforce_soql import build_soql, can_push_down, change_probe_soql
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
    # `flowbridge oauth`: the web server flow ({login_url}/services/oauth2/authorize and
    # /token) with PKCE. Only the refresh_token scope makes Salesforce issue a refresh token;
    # the connected app's callback URL must equal the redirect URL printed (fix it with --port).
    OAUTH_SCOPES: ClassVar[tuple[str, ...]] = ("api", "refresh_token")

    def authorization_code_app(self) -> AuthorizationCodeApp:
        if self.auth_flow != "refresh_token":
            raise ConnectorError(f"connection '{self.connection_name}': auth_flow is "
                                 f"{self.auth_flow}, which never reads a refresh token; set "
                                 "auth_flow: refresh_token first")  # fmt: skip
        root = self.login_url.rstrip("/")
        return AuthorizationCodeApp(
            authorize_url=root + "/services/oauth2/authorize",
            token_url=root + "/services/oauth2/token", client_id=self.client_id,
            client_secret=self.client_secret, scopes=self.OAUTH_SCOPES, pkce=True,
            redirect_host="localhost",
            no_refresh_token_hint="add the refresh_token (offline access) scope to the "
            "connected app's Selected OAuth Scopes",
        )  # fmt: skip

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


def describe_error(answer: Answer) -> str:
    """Salesforce's error body is [{"message", "errorCode"}]; show the codes and messages."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return answer.text[:200]
    if isinstance(body, list):
        return "; ".join(f"{e.get('errorCode')}: {e.get('message', '').strip()}" for e in body)
    if isinstance(body, dict) and "error" in body:
        return f"{body['error']}: {body.get('error_description', '')}"
    return answer.text[:200]


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
        deleted = ("IsDeleted", True) if "IsDeleted" in fields else None  # queryAll: recycle bin
        schema = ObjectSchema(body.get("name", object_name), fields, deleted_when=deleted)
        self._schemas[object_name] = schema
        return schema

    def can_push_down(self, spec: FilterSpec, info: FieldInfo) -> bool:
        return can_push_down(spec, info)

    def latest_change(self, request: ReadRequest) -> datetime | None:
        """The newest cursor value among the records `request` would read (None: none), from
        one query answering at most one record: the change probe of an event trigger.
        Without a cursor field it asks about SystemModstamp, the stamp every change moves
        (and the one Salesforce's own Get Updated resource uses)."""
        schema = self.describe(request.object)
        field = request.cursor_field or "SystemModstamp"
        request = replace(request, cursor_field=field)
        info = schema.require([field], where=f"{request.object} change probe")[0]
        if info.source_type not in ("datetime", "date"):
            raise ConnectorError(
                f"{request.object}.{field} is a {info.source_type} field; a change probe "
                "needs a datetime such as SystemModstamp"
            )
        soql = change_probe_soql(request, schema)
        resource = "queryAll" if request.include_deleted else "query"  # deletes too, then
        body = self._get(f"{self.data_path}/{resource}/", params={"q": soql})
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise MalformedResponse(f"the change probe of {request.object} is not a query answer")
        value = records[0].get(field) if records else None
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise MalformedResponse(
                f"the change probe of {request.object}: {field} is not a {info.source_type}"
            ) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    def read(self, request: ReadRequest) -> Iterator[pl.DataFrame]:
        """Typed pages of the query's records.

        Three stages overlap: a thread fetches the pages' bytes (following nextRecordsUrl,
        found without parsing the page), a thread parses them into frames, and the caller
        stores them. A page that does not parse is fetched again, with the usual retries.
        """
        schema = self.describe(request.object)
        infos = schema.require(request.fields)
        soql = build_soql(request, schema)
        page_size = min(request.page_size or MAX_BATCH_SIZE, MAX_BATCH_SIZE)
        parser = PageParser(request.object, infos)
        headers = {"Sforce-Query-Options": f"batchSize={page_size}"}
        # queryAll also answers deleted (recycle bin) records, with IsDeleted true.
        resource = "queryAll" if request.include_deleted else "query"
        first = RawPage(1, f"{self.data_path}/{resource}/", {"q": soql}, b"")
        bodies = prefetched(self._bodies(first, headers))
        yield from prefetched(self._parsed(bodies, parser, headers))

    def _bodies(self, page: RawPage, headers: dict) -> Iterator[RawPage]:
        while True:
            body, next_url = self._get(
                page.path, parse=_body_and_next_url, params=page.params, headers=headers
            )
            yield RawPage(page.number, page.path, page.params, body)
            if next_url is None:
                return
            page = RawPage(page.number + 1, next_url, None, b"")

    def _parsed(
        self, pages: Iterator[RawPage], parser: PageParser, headers: dict
    ) -> Iterator[pl.DataFrame]:
        for page in pages:
            try:
                yield parser.parse(page.body, page.number)
            except MalformedResponse:
                # Fetch this page again (query locators are re-readable), retrying as usual.
                self.http.stats.retries += 1
                yield self._get(
                    page.path, parse=lambda body, n=page.number: parser.parse(body, n),
                    params=page.params, headers=headers,
                )  # fmt: skip


@dataclass(frozen=True)
class RawPage:
    number: int
    path: str
    params: dict | None
    body: bytes


_DONE = re.compile(rb'"done"\s*:\s*(true|false)')
_NEXT_URL = re.compile(rb'"nextRecordsUrl"\s*:\s*"([^"]+)"')


def _body_and_next_url(body: bytes) -> tuple[bytes, str | None]:
    """The page's next URL, read from the envelope's first or last bytes without parsing the
    records (Salesforce writes totalSize, done and nextRecordsUrl around the records array)."""
    for part in (body[:512], body[-512:]):
        done = _DONE.search(part)
        if done:
            if done.group(1) == b"true":
                return body, None
            url = _NEXT_URL.search(part)
            if url:
                return body, url.group(1).decode()
    doc = parse_json(body)  # unusual layout: parse the whole envelope
    if not isinstance(doc, dict) or "done" not in doc:
        raise MalformedResponse("the answer is not a query result (no 'done' flag)")
    return body, None if doc["done"] else doc.get("nextRecordsUrl")


class PageParser:
    """Turns one query answer's bytes into a typed frame without a Python object per record.

    Polars reads dates and datetimes (with their UTC offset) straight from the JSON; a value it
    cannot read becomes null, so a page whose temporal columns have nulls is read again with
    those columns as text to tell a real null from a malformed value.
    """

    def __init__(self, object_name: str, infos: list[FieldInfo]):
        self.object_name = object_name
        self.infos = infos
        self.schema = pl.Schema({i.name: i.dtype for i in infos})
        self.temporal = [i.name for i in infos if i.dtype.is_temporal()]

    def _envelope(self, schema: pl.Schema) -> dict:
        return {
            "totalSize": pl.Int64,
            "done": pl.Boolean,
            "nextRecordsUrl": pl.String,
            "records": pl.List(pl.Struct(schema)),
        }

    def _read(self, body: bytes, number: int, schema: pl.Schema) -> pl.DataFrame:
        try:
            envelope = pl.read_json(io.BytesIO(body), schema=self._envelope(schema))
        except pl.exceptions.PolarsError:
            raise MalformedResponse(explain_page(
                body, f"page {number} of {self.object_name}", "records", self.infos,
                record_id=lambda r: r.get("Id", "?"), answer="a query answer",
            )) from None  # fmt: skip
        if envelope.height != 1 or envelope["done"][0] is None:
            raise MalformedResponse(f"page {number} of {self.object_name} has no 'done' flag")
        records = envelope["records"][0]
        if records is None:
            raise MalformedResponse(f"page {number} of {self.object_name} has no 'records' list")
        return records.struct.unnest() if len(records) else pl.DataFrame(schema=schema)

    def parse(self, body: bytes, number: int) -> pl.DataFrame:
        frame = self._read(body, number, self.schema)
        if any(frame[name].null_count() for name in self.temporal):
            self._check_temporal(body, number, frame)
        return frame

    def _check_temporal(self, body: bytes, number: int, frame: pl.DataFrame) -> None:
        text = self._read(body, number, pl.Schema({n: pl.String() for n in self.schema}))
        for name in self.temporal:
            bad = frame.filter(pl.col(name).is_null() & text[name].is_not_null())
            if bad.height:
                record = bad["Id"][0] if "Id" in bad.columns else f"#{bad.height}"
                kind = next(i.source_type for i in self.infos if i.name == name)
                raise MalformedResponse(
                    f"page {number} of {self.object_name}: record {record}: field {name} "
                    f"is not a valid {kind}"
                )
