"""Local SAP OData stand-in: S/4HANA's sales order API as an OData v2 service
(API_SALES_ORDER_SRV: A_SalesOrder, A_SalesOrderItem) and as its OData v4 successor
(api_salesorder/srvd_a2x/.../0001: SalesOrder, SalesOrderItem) over the same deterministic data,
with $metadata, $select, $filter, $orderby, $top/$skip, server paging with $skiptoken,
$inlinecount / $count, basic auth, an OAuth token endpoint (client credentials, as SAP BTP's
XSUAA) and injectable faults."""

from __future__ import annotations

import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, unquote_plus, urlencode, urlsplit

import polars as pl

from flow_assets.sandbox.faults import Fault
from flow_assets.sandbox.server import Reply, SandboxServer, basic_credentials, json_body

V2_ROOT = "/sap/opu/odata/sap/API_SALES_ORDER_SRV"
V4_ROOT = "/sap/opu/odata4/sap/api_salesorder/srvd_a2x/sap/salesorder/0001"
V4_NAMESPACE = "com.sap.gateway.srvd_a2x.api_salesorder.v0001"
FAULT_KINDS = ("expire_token", "429", "503", "malformed")
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_JSON = {"2": "application/json;charset=utf-8",
         "4": "application/json;odata.metadata=minimal;IEEE754Compatible=true;charset=utf-8"}  # fmt: skip
# property -> (kind, MaxLength); the key first. Kinds are typed per version below.
ORDER = {
    "SalesOrder": ("string", 10), "SalesOrderType": ("string", 4),
    "SalesOrganization": ("string", 4), "DistributionChannel": ("string", 2),
    "OrganizationDivision": ("string", 2), "SoldToParty": ("string", 10),
    "CreationDate": ("date", None), "CreatedByUser": ("string", 12),
    "LastChangeDateTime": ("timestamp", None), "PurchaseOrderByCustomer": ("string", 35),
    "CustomerPurchaseOrderDate": ("date", None), "SalesOrderDate": ("date", None),
    "TotalNetAmount": ("decimal", None), "TransactionCurrency": ("string", 5),
    "OverallSDProcessStatus": ("string", 1), "CompleteDeliveryIsDefined": ("boolean", None),
}  # fmt: skip
ITEM = {
    "SalesOrder": ("string", 10), "SalesOrderItem": ("string", 6), "Material": ("string", 40),
    "SalesOrderItemText": ("string", 40), "RequestedQuantity": ("decimal", None),
    "RequestedQuantityUnit": ("string", 3), "NetAmount": ("decimal", None),
    "TransactionCurrency": ("string", 5),
}  # fmt: skip
# entity set -> (type name, properties, keys), per version
SETS = {
    "2": {"A_SalesOrder": ("A_SalesOrderType", ORDER, ("SalesOrder",)),
          "A_SalesOrderItem": ("A_SalesOrderItemType", ITEM, ("SalesOrder", "SalesOrderItem"))},
    "4": {"SalesOrder": ("SalesOrderType", ORDER, ("SalesOrder",)),
          "SalesOrderItem": ("SalesOrderItemType", ITEM, ("SalesOrder", "SalesOrderItem"))},
}  # fmt: skip
EDM = {
    "2": {"string": 'Type="Edm.String"', "boolean": 'Type="Edm.Boolean"',
          "date": 'Type="Edm.DateTime" Precision="0" sap:display-format="Date"',
          "timestamp": 'Type="Edm.DateTimeOffset" Precision="7"',
          "decimal": 'Type="Edm.Decimal" Precision="16" Scale="3"'},
    "4": {"string": 'Type="Edm.String"', "boolean": 'Type="Edm.Boolean"', "date": 'Type="Edm.Date"',
          "timestamp": 'Type="Edm.DateTimeOffset" Precision="7"',
          "decimal": 'Type="Edm.Decimal" Precision="16" Scale="3"'},
}  # fmt: skip
POLARS = {"string": pl.String, "date": pl.Date, "timestamp": pl.Datetime("us", "UTC"),
          "decimal": pl.Float64, "boolean": pl.Boolean}  # fmt: skip
NOT_FILTERABLE = {"SalesOrderItemText"}  # sap:filterable="false" on v2
_TOKEN = re.compile(r"""\s*(?:(?P<open>\()|(?P<close>\))|(?P<string>'(?:[^']|'')*')
    |(?P<typed>(?:datetimeoffset|datetime)'[^']*')
    |(?P<moment>\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d))
    |(?P<date>\d{4}-\d\d-\d\d)|(?P<number>-?\d+(?:\.\d+)?[MmLlDdFf]?)|(?P<word>[A-Za-z_]\w*))""",
                    re.X)  # fmt: skip
_OPS = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}  # fmt: skip


class ODataError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


def build_data(records: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Deterministic sales orders (`records`) and their 1-3 items, as typed Python values. Every
    4th order shares its LastChangeDateTime with the one before; some change times have
    milliseconds; some purchase order numbers hold a quote (')."""
    rng = random.Random(seed)
    orders, items, previous = [], [], _EPOCH
    for i in range(records):
        created = _EPOCH + timedelta(seconds=rng.randrange(0, 86400 * 120))
        changed = created + timedelta(seconds=rng.randrange(0, 86400 * 60),
                                      milliseconds=rng.choice((0, 0, 250, 999)))  # fmt: skip
        if i % 4 == 3:
            changed = max(previous, created)
        previous = changed
        currency = ("EUR", "USD")[i % 2]
        order = {
            "SalesOrder": str(1000000 + i), "SalesOrderType": ("OR", "OR", "CBFD", "RE")[i % 4],
            "SalesOrganization": ("1010", "1710")[i % 2], "DistributionChannel": "10",
            "OrganizationDivision": "00", "SoldToParty": str(17100001 + i % 40),
            "CreationDate": created.date(), "CreatedByUser": "CB9980000010",
            "LastChangeDateTime": changed,
            "PurchaseOrderByCustomer": "" if i % 5 == 0 else f"PO-{i}" + ("'s" if i % 50 == 1 else ""),
            "CustomerPurchaseOrderDate": None if i % 3 == 0 else created.date() - timedelta(days=2),
            "SalesOrderDate": created.date(), "TotalNetAmount": Decimal(0),
            "TransactionCurrency": currency, "OverallSDProcessStatus": "ABC"[i % 3],
            "CompleteDeliveryIsDefined": i % 7 == 0,
        }  # fmt: skip
        for k in range(1 + i % 3):
            quantity = Decimal(rng.randrange(1, 50)).quantize(Decimal("0.001"))
            net = (quantity * Decimal(rng.randrange(100, 100_000)) / 100).quantize(Decimal("0.01"))
            order["TotalNetAmount"] += net
            items.append({
                "SalesOrder": order["SalesOrder"], "SalesOrderItem": str(10 * (k + 1)),
                "Material": f"TG1{k + i % 4}", "SalesOrderItemText": f"Trading good {k}",
                "RequestedQuantity": quantity, "RequestedQuantityUnit": "PC", "NetAmount": net,
                "TransactionCurrency": currency,
            })  # fmt: skip
        orders.append(order)
    return {"order": orders, "item": items}


def metadata(version: str) -> str:
    """The service's EDMX document, in the shape SAP Gateway (v2) / RAP (v4) serve it."""
    types, sets = [], []
    for name, (type_name, props, keys) in SETS[version].items():
        lines = [f'<EntityType Name="{type_name}"><Key>',
                 *(f'<PropertyRef Name="{k}"/>' for k in keys), "</Key>"]  # fmt: skip
        for prop, (kind, length) in props.items():
            extra = f' MaxLength="{length}"' if length else ""
            extra += ' Nullable="false"' if prop in keys or kind != "date" else ""
            if version == "2" and prop in NOT_FILTERABLE:
                extra += ' sap:filterable="false"'
            lines.append(f'<Property Name="{prop}" {EDM[version][kind]}{extra}/>')
        if version == "4":  # RAP's message property: a collection of a complex type
            lines.append(f'<Property Name="SAP__Messages" Type="Collection({V4_NAMESPACE}.'
                         'SAP__Message)" Nullable="false"/>')  # fmt: skip
        types.append("\n".join([*lines, "</EntityType>"]))
        namespace = "API_SALES_ORDER_SRV" if version == "2" else V4_NAMESPACE
        sets.append(f'<EntitySet Name="{name}" EntityType="{namespace}.{type_name}"/>')
    if version == "2":
        return f"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"
 xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
 xmlns:sap="http://www.sap.com/Protocols/SAPData">
<edmx:DataServices m:DataServiceVersion="2.0">
<Schema Namespace="API_SALES_ORDER_SRV" xml:lang="en" sap:schema-version="1"
 xmlns="http://schemas.microsoft.com/ado/2008/09/edm">
{chr(10).join(types)}
<EntityContainer Name="API_SALES_ORDER_SRV_Entities" m:IsDefaultEntityContainer="true"
 sap:supported-formats="atom json xlsx">
{chr(10).join(sets)}
</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
<edmx:DataServices>
<Schema Namespace="{V4_NAMESPACE}" Alias="SAP__self" xmlns="http://docs.oasis-open.org/odata/ns/edm">
<ComplexType Name="SAP__Message"><Property Name="code" Type="Edm.String" Nullable="false"/>
<Property Name="message" Type="Edm.String" Nullable="false"/></ComplexType>
{chr(10).join(types)}
<EntityContainer Name="Container">
{chr(10).join(sets)}
</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"""


def error_body(version: str, code: str, message: str) -> bytes:
    """SAP Gateway's v2 error, or the OData v4 error with details."""
    if version == "2":
        return json_body({"error": {"code": code, "message": {"lang": "en", "value": message},
                                    "innererror": {"transactionid": secrets.token_hex(16).upper(),
                                                   "errordetails": []}}})  # fmt: skip
    return json_body({"error": {"code": code, "message": message,
                                "details": [{"code": code, "message": message, "target": ""}]}})  # fmt: skip


class SapODataSandbox(SandboxServer):
    """Both services on 127.0.0.1 with the same data. Credentials: a user (basic auth) and an
    OAuth client (POST /oauth/token, client credentials, as a form or HTTP Basic). `page_cap`
    is the server's page size: larger answers end with a next link carrying $skiptoken."""

    product = "SapOData"
    fault_kinds = FAULT_KINDS

    def __init__(self, port: int = 0, records: int = 700, seed: int = 5,
                 username: str = "FLOWBRIDGE_COMM_USER", password: str = "sandbox-password",
                 client_id: str = "sb-flowbridge!t1", client_secret: str = "sandbox-secret",
                 sap_client: str = "100", page_cap: int = 100,
                 token_lifetime: float = 43199) -> None:  # fmt: skip
        super().__init__(port)
        self.username, self.password, self.sap_client = username, password, sap_client
        self.client_id, self.client_secret = client_id, client_secret
        self.page_cap, self.token_lifetime = page_cap, token_lifetime
        self._data = build_data(records, seed)
        self._tokens: dict[str, float] = {}  # access token -> expiry (time.monotonic)
        self._lock = threading.Lock()
        self.requests: list[str] = []  # decoded paths with queries, in order (no credentials)

    # --- truth, credentials ----------------------------------------------------------

    def rows(self, entity_set: str) -> list[dict[str, Any]]:
        return self._data["item" if entity_set.endswith("Item") else "order"]

    def frame(self, entity_set: str) -> pl.DataFrame:
        """The typed truth behind an entity set (either version's name)."""
        props = ITEM if entity_set.endswith("Item") else ORDER
        schema = {p: POLARS[kind] for p, (kind, _) in props.items()}
        rows = [{p: float(v) if isinstance(v, Decimal) else v for p, v in r.items()}
                for r in self.rows(entity_set)]  # fmt: skip
        return pl.DataFrame(rows, schema=schema)

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    # --- requests --------------------------------------------------------------------

    def internal_error(self) -> Reply:
        return Reply(500, error_body("2", "/IWBEP/CM_MGW_RT/000", "Internal server error"))

    def respond(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        parts = urlsplit(raw_path)
        target = unquote(parts.path) + (f"?{unquote_plus(parts.query)}" if parts.query else "")
        with self._lock:
            self.requests.append(target)
        if parts.path == "/oauth/token" and method == "POST":
            return self._token(headers, body)
        version = "4" if parts.path.startswith(V4_ROOT) else "2"
        fault = self.faults.take(target)
        if fault is not None and fault.kind != "malformed":
            return self._fault(fault, version)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            reply = self._route(method, unquote(parts.path), query, headers, version)
        except ODataError as exc:
            reply = Reply(exc.status, error_body(version, exc.code, str(exc)),
                          {"Content-Type": _JSON[version]})  # fmt: skip
        if fault is not None:  # malformed: a 200 whose JSON stops half way
            return Reply(200, reply.body[: max(1, len(reply.body) // 2)], reply.headers)
        return reply

    def _fault(self, fault: Fault, version: str) -> Reply:
        seconds = "1" if fault.retry_after is None else f"{fault.retry_after:g}"
        if fault.kind == "expire_token":
            self.expire_tokens()
            return Reply(401, error_body(version, "/IWFND/CM_CONSUMER/101", "Token expired"))
        if fault.kind == "503":
            return Reply(503, error_body(version, "/IWFND/CM_BEC/026", "Service unavailable"),
                         {"Retry-After": seconds})  # fmt: skip
        # SAP BTP API Management's spike arrest (an Apigee policy): 429 and Retry-After
        fault_body = {"fault": {"faultstring": "Spike arrest violation. Allowed rate : 10ps",
                                "detail": {"errorcode": "policies.ratelimit.SpikeArrestViolation"}}}  # fmt: skip
        return Reply(429, json_body(fault_body), {"Retry-After": seconds})

    def _token(self, headers: Mapping[str, str], body: bytes) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = basic_credentials(headers)
        if basic is not None:  # XSUAA takes the client as HTTP Basic too
            client_id, client_secret = basic
        if form.get("grant_type") != "client_credentials":
            return Reply(400, json_body({"error": "unsupported_grant_type",
                                         "error_description": "Unsupported grant type"}))  # fmt: skip
        if client_id != self.client_id or not secrets.compare_digest(client_secret,
                                                                     self.client_secret):  # fmt: skip
            return Reply(401, json_body({"error": "unauthorized",
                                         "error_description": "Bad credentials"}))  # fmt: skip
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime
        return Reply(200, json_body({"access_token": token, "token_type": "bearer",
                                     "expires_in": int(self.token_lifetime),
                                     "scope": "uaa.resource", "jti": secrets.token_hex(16)}))  # fmt: skip

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        scheme, _, credential = (headers.get("Authorization") or "").partition(" ")
        if scheme == "Bearer":
            with self._lock:
                return self._tokens.get(credential, 0) > time.monotonic()
        basic = basic_credentials(headers)
        if basic is not None:
            user, secret = basic
            return user == self.username and secrets.compare_digest(secret, self.password)
        return False

    def _route(self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str],
               version: str) -> Reply:  # fmt: skip
        if not self._authorized(headers):
            raise ODataError(401, "/IWFND/CM_CONSUMER/101", "Logon failed: user, password or "
                             "token not accepted")  # fmt: skip
        if query.get("sap-client", self.sap_client) != self.sap_client:
            raise ODataError(401, "/IWFND/CM_CONSUMER/101",
                             f"Client {query['sap-client']} is not available in this system")  # fmt: skip
        if method != "GET":
            raise ODataError(405, "/IWBEP/CM_MGW_RT/004", "The sandbox serves reads only")
        root = V4_ROOT if version == "4" else V2_ROOT
        segment = path[len(root) :].strip("/") if path.startswith(root) else None
        if segment == "$metadata":
            return Reply(200, metadata(version).encode(), {"Content-Type": "application/xml"})
        name, _, count = (segment or "").partition("/")
        if segment is None or name not in SETS[version] or count not in ("", "$count"):
            raise ODataError(404, "/IWBEP/CM_MGW_RT/021",
                             f"Resource not found for segment '{segment or path}'")  # fmt: skip
        type_name, props, keys = SETS[version][name]
        rows = self._query(self.rows(name), props, type_name, query, version)
        if count:
            return Reply(200, str(len(rows)).encode(), {"Content-Type": "text/plain"})
        accept = headers.get("Accept") or ""
        if version == "2" and query.get("$format", "json" if "json" in accept else "") != "json":
            raise ODataError(406, "/IWBEP/CM_MGW_RT/052", "The sandbox answers JSON only: "
                             "send $format=json or Accept: application/json")  # fmt: skip
        return self._collection(name, rows, props, keys, query, version, accept)

    def _query(self, rows: list[dict], props: dict, type_name: str, query: dict[str, str],
               version: str) -> list[dict]:  # fmt: skip
        def known(prop: str) -> str:
            if prop not in props:
                raise ODataError(400, "/IWBEP/CM_MGW_RT/022",
                                 f"Property {prop} not found in type {type_name}")  # fmt: skip
            return prop

        if query.get("$filter"):
            test = FilterParser(query["$filter"], props, version, known).parse()
            rows = [r for r in rows if test(r)]
        for clause in reversed([c.split() for c in query.get("$orderby", "").split(",") if c]):
            prop = known(clause[0])
            rows = sorted(rows, key=lambda r, p=prop: (0,) if r[p] is None else (1, r[p]),
                          reverse=clause[-1] == "desc")  # nulls first, as SAP sorts them  # fmt: skip
        return rows

    def _collection(self, name: str, rows: list[dict], props: dict, keys: tuple, query: dict,
                    version: str, accept: str) -> Reply:  # fmt: skip
        try:
            skip, top = int(query.get("$skip", 0)), query.get("$top")
            start = int(query.get("$skiptoken", 0))
            selection = rows[skip : None if top is None else skip + int(top)]
        except ValueError:
            raise ODataError(
                400, "/IWBEP/CM_MGW_RT/025", "Invalid $top, $skip or $skiptoken"
            ) from None  # noqa: E501
        select = [p for p in query.get("$select", "*").split(",") if p and p != "*"] or list(props)
        for prop in select:
            if prop not in props:
                raise ODataError(400, "/IWBEP/CM_MGW_RT/022", f"Property {prop} not found")
        page = selection[start : start + self.page_cap]
        strings = version == "2" or "IEEE754Compatible=true" in accept
        records = [self._record(name, r, select, keys, version, strings) for r in page]
        link = None
        if start + self.page_cap < len(selection):
            rest = [(k, v) for k, v in query.items() if k != "$skiptoken"]
            link = f"{name}?{urlencode([*rest, ('$skiptoken', start + self.page_cap)])}"
        counted = query.get("$inlinecount") == "allpages" or query.get("$count") == "true"
        if version == "2":
            d: dict[str, Any] = {"results": records}
            d |= {"__count": str(len(rows))} if counted else {}
            d |= {"__next": f"{self.url}{V2_ROOT}/{link}"} if link else {}
            body = {"d": d}
        else:
            body = {"@odata.context": f"$metadata#{name}"}
            body |= {"@odata.count": len(rows)} if counted else {}
            body |= {"value": records} | ({"@odata.nextLink": link} if link else {})
        return Reply(200, json_body(body), {"Content-Type": _JSON[version]})

    def _record(self, name: str, row: dict, select: list[str], keys: tuple, version: str,
                strings: bool) -> dict[str, Any]:  # fmt: skip
        record: dict[str, Any] = {}
        if version == "2":
            key = (
                ",".join(f"{k}='{row[k]}'" for k in keys) if len(keys) > 1 else f"'{row[keys[0]]}'"
            )
            uri = f"{self.url}{V2_ROOT}/{name}({key})"
            record["__metadata"] = {"id": uri, "uri": uri,
                                    "type": f"API_SALES_ORDER_SRV.{SETS['2'][name][0]}"}  # fmt: skip
        for prop in select:
            value = row[prop]
            if isinstance(value, datetime):  # SAP sends ms (v2) / 7 digits (v4)
                ms = (value - _UNIX) // timedelta(milliseconds=1)
                value = f"/Date({ms}+0000)/" if version == "2" else (
                    value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z")  # fmt: skip
            elif isinstance(value, date):
                stamp = int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
                value = f"/Date({stamp * 1000})/" if version == "2" else value.isoformat()
            elif isinstance(value, Decimal):
                value = str(value) if strings else float(value)
            record[prop] = value
        return record


class FilterParser:
    """Enough of $filter for the connector and common clients: comparisons (eq ne gt ge lt le)
    of a property with a literal, joined by and / or, in parentheses, with each version's
    literals (v2: 'text', 12.5M, 7L, datetime'...', datetimeoffset'...Z'; v4: 'text', 12.5,
    2024-01-01, 2024-01-01T00:00:00Z). A literal of the wrong type is refused, as SAP does."""

    def __init__(self, text: str, props: dict, version: str, known: Callable[[str], str]):
        self.tokens: list[tuple[str, str]] = []
        self.props, self.version, self.known = props, version, known
        position, text = 0, text.strip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise self._invalid(
                    f"unexpected text at {position}: {text[position : position + 20]}"
                )  # noqa: E501
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()

    def _invalid(self, why: str) -> ODataError:
        return ODataError(400, "/IWBEP/CM_MGW_RT/044", f"Invalid filter expression: {why}")

    def _take(self) -> tuple[str, str]:
        if not self.tokens:
            raise self._invalid("it ends too early")
        return self.tokens.pop(0)

    def parse(self) -> Callable[[dict], bool]:
        test = self._or()
        if self.tokens:
            raise self._invalid(f"unexpected '{self.tokens[0][1]}'")
        return test

    def _or(self) -> Callable[[dict], bool]:
        tests = [self._and()]
        while self.tokens and self.tokens[0] == ("word", "or"):
            self._take()
            tests.append(self._and())
        return lambda r: any(t(r) for t in tests)

    def _and(self) -> Callable[[dict], bool]:
        tests = [self._primary()]
        while self.tokens and self.tokens[0] == ("word", "and"):
            self._take()
            tests.append(self._primary())
        return lambda r: all(t(r) for t in tests)

    def _primary(self) -> Callable[[dict], bool]:
        kind, text = self._take()
        if kind == "open":
            test = self._or()
            if self._take()[0] != "close":
                raise self._invalid("a '(' is not closed")
            return test
        if kind != "word":
            raise self._invalid(f"expected a property, found '{text}'")
        prop = self.known(text)
        op = self._take()[1]
        if op not in _OPS:
            raise self._invalid(f"unknown operator '{op}'")
        value = self._literal(self.props[prop][0], *self._take())
        compare = _OPS[op]
        if value is None or op in ("eq", "ne"):
            return lambda r: compare(r[prop], value)
        return lambda r: r[prop] is not None and compare(r[prop], value)

    def _literal(self, prop_kind: str, kind: str, text: str) -> Any:
        v2 = self.version == "2"
        try:
            if kind == "word" and text in ("null", "true", "false"):
                if text != "null" and prop_kind != "boolean":
                    raise ValueError
                return None if text == "null" else text == "true"
            if prop_kind == "string" and kind == "string":
                return text[1:-1].replace("''", "'")
            if prop_kind == "decimal" and kind == "number":
                suffix = text[-1] if text[-1].isalpha() else ""
                if (suffix.upper() != "M" and (v2 and "." in text)) or (suffix and not v2):
                    raise ValueError  # v2: 1.5 alone is an Edm.Double
                return Decimal(text.rstrip("Mm"))
            if prop_kind == "timestamp" and kind == ("typed" if v2 else "moment"):
                if v2 and not text.startswith("datetimeoffset'"):
                    raise ValueError
                moment = datetime.fromisoformat(text.split("'")[1] if v2 else text)
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            if prop_kind == "date" and kind == ("typed" if v2 else "date"):
                if v2 and not text.startswith("datetime'"):
                    raise ValueError
                return (datetime.fromisoformat(text.split("'")[1]).date() if v2
                        else date.fromisoformat(text))  # fmt: skip
        except (ValueError, InvalidOperation):
            pass
        raise self._invalid(f"the literal {text} does not fit an Edm property of kind {prop_kind}")
