"""The SAP OData connector's specifics against its sandbox (both protocol versions): $metadata
types, /Date()/ and ISO values, server paging followed by its $skiptoken links, $top windows,
$filter for incremental reads and pushed filters, auth (basic, OAuth client credentials with
renewal), SAP's error bodies, malformed pages; and SAP's own v2 client, pyodata, against the
same sandbox. (For v4 there is no equally common Python client; pyodata reads v2 only.)"""

import logging
import time
from datetime import UTC, datetime

import polars as pl
import pyodata
import pytest
import requests
from polars.testing import assert_frame_equal

from flow_assets.connectors import CONNECTION_TYPES, SOURCE_CONNECTORS
from flow_assets.connectors.base import ReadRequest
from flow_assets.connectors.errors import (
    AuthError,
    ConnectorError,
    MalformedResponse,
    UnknownField,
    UnknownObject,
)
from flow_assets.connectors.http import Answer, TransientError
from flow_assets.connectors.sap_odata import (
    PageParser,
    SapODataConnection,
    describe_error,
    filter_condition,
    parse_metadata,
)
from flow_assets.destinations.lake import Lake
from flow_assets.sandbox.sap_odata import V2_ROOT, V4_ROOT, SapODataSandbox
from flow_assets.spec.models import FilterSpec
from tests.conftest import copy_project, failure_message, materialization, run_flow

USER = {"username": "TESTS_COMM_USER", "password": "tests-password"}
CLIENT = {"client_id": "sb-tests!t1", "client_secret": "tests-secret"}
VERSIONS = {"2": (V2_ROOT, "A_SalesOrder"), "4": (V4_ROOT, "SalesOrder")}
TIME = pl.Datetime("us", "UTC")


@pytest.fixture(scope="module")
def sandbox():
    with SapODataSandbox(records=700, **USER, **CLIENT) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(sandbox):
    sandbox.requests.clear()
    yield
    pending = sandbox.pending_faults()
    sandbox.reset_faults()
    assert not pending, f"a fault was left pending: {pending}"


def basic(sandbox, version="2", **kwargs) -> SapODataConnection:
    settings = {**USER, "sap_client": "100", "connection_name": "sap", **kwargs}
    return SapODataConnection(service_url=sandbox.url + VERSIONS[version][0], **settings)


def oauth(sandbox, version="2", **kwargs) -> SapODataConnection:
    settings = {**CLIENT, "sap_client": "100", "connection_name": "sap", **kwargs}
    return SapODataConnection(service_url=sandbox.url + VERSIONS[version][0],
                              token_url=sandbox.url + "/oauth/token", **settings)  # fmt: skip


def read(client, entity_set, **request) -> pl.DataFrame:
    fields = request.pop("fields", None) or list(client.describe(entity_set).fields)
    return pl.concat(list(client.read(ReadRequest(object=entity_set, fields=fields, **request))))


def data_reads(sandbox, entity_set) -> list[str]:
    return [r for r in sandbox.requests if f"/{entity_set}?" in r]


def test_registered_as_a_source():
    assert CONNECTION_TYPES["sap_odata"] is SapODataConnection
    assert "sap_odata" in SOURCE_CONNECTORS


@pytest.mark.parametrize("version", ["2", "4"])
def test_entity_sets_are_typed_from_metadata_and_the_version_detected(sandbox, version):
    client = basic(sandbox, version).open()
    assert client.version == version
    entity_set = VERSIONS[version][1]
    assert client.list_objects() == sorted([entity_set, entity_set + "Item"])
    fields = client.describe(entity_set).fields
    assert {n: fields[n].dtype for n in ("SalesOrder", "CreationDate", "LastChangeDateTime",
                                         "TotalNetAmount", "CompleteDeliveryIsDefined")} == {
        "SalesOrder": pl.String(), "CreationDate": pl.Date(), "LastChangeDateTime": TIME,
        "TotalNetAmount": pl.Float64(), "CompleteDeliveryIsDefined": pl.Boolean()}  # fmt: skip
    assert "SAP__Messages" not in fields  # v4's collection of a complex type is no column
    assert not fields["SalesOrder"].nillable and fields["CustomerPurchaseOrderDate"].nillable
    assert f"{VERSIONS[version][0]}/$metadata?sap-client=100" in sandbox.requests


def test_a_configured_version_that_metadata_contradicts_is_refused(sandbox):
    with pytest.raises(ConnectorError, match="connection 'sap': odata_version is 4 but .* v2"):
        basic(sandbox, "2", odata_version="4").open().check()
    with pytest.raises(ConnectorError, match='odata_version is "2" or "4"'):
        basic(sandbox, "2", odata_version="3").open()


V2_TYPES = b"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"
 xmlns:sap="http://www.sap.com/Protocols/SAPData"><edmx:DataServices>
<Schema Namespace="S" xmlns="http://schemas.microsoft.com/ado/2008/09/edm">
<EntityType Name="T"><Key><PropertyRef Name="Id"/></Key>
<Property Name="Id" Type="Edm.Guid" Nullable="false"/><Property Name="I16" Type="Edm.Int16"/>
<Property Name="I32" Type="Edm.Int32"/><Property Name="I64" Type="Edm.Int64"/>
<Property Name="Dbl" Type="Edm.Double"/><Property Name="Dec" Type="Edm.Decimal"/>
<Property Name="Flag" Type="Edm.Boolean"/><Property Name="At" Type="Edm.DateTime"/>
<Property Name="On" Type="Edm.DateTime" sap:display-format="Date"/>
<Property Name="Off" Type="Edm.DateTimeOffset" sap:filterable="false"/>
<Property Name="Clock" Type="Edm.Time"/><Property Name="Pic" Type="Edm.Stream"/></EntityType>
<EntityContainer Name="C"><EntitySet Name="Ts" EntityType="S.T"/></EntityContainer>
</Schema></edmx:DataServices></edmx:Edmx>"""


def test_every_v2_type_and_date_form_is_parsed():
    version, sets = parse_metadata(V2_TYPES)
    entity = sets["Ts"]
    assert version == "2" and entity.keys == ("Id",) and "Pic" not in entity.schema.fields
    assert not entity.schema.fields["Off"].filterable
    names = list(entity.schema.fields)
    body = b"""{"d": {"results": [
      {"__metadata": {"uri": "Ts(guid'1')"}, "Id": "005056a2-0000-1eda-8000-000000000001",
       "I16": 7, "I32": -2147483648, "I64": "9007199254740993", "Dbl": 1.5E+2, "Dec": "12.340",
       "Flag": true, "At": "/Date(1672531200000)/", "On": "/Date(1704067200000)/",
       "Off": "/Date(1672531200123+0060)/", "Clock": "PT12H30M00S"},
      {"Id": "005056a2-0000-1eda-8000-000000000002", "I16": null, "I32": 0, "I64": "-1",
       "Dbl": "2.5", "Dec": "0", "Flag": false, "At": "/Date(-1000+0030)/", "On": null,
       "Off": "/Date(0)/", "Clock": null}], "__next": "Ts?$skiptoken=2"}}"""
    frame, link = PageParser("Ts", entity, names, version).parse(body, 1)
    assert link == "Ts?$skiptoken=2"
    assert frame.schema == pl.Schema({
        "Id": pl.String(), "I16": pl.Int64(), "I32": pl.Int64(), "I64": pl.Int64(),
        "Dbl": pl.Float64(), "Dec": pl.Float64(), "Flag": pl.Boolean(), "At": TIME,
        "On": pl.Date(), "Off": TIME, "Clock": pl.String()})  # fmt: skip
    assert frame.row(0) == (
        "005056a2-0000-1eda-8000-000000000001", 7, -2147483648, 9007199254740993, 150.0, 12.34,
        True, datetime(2023, 1, 1, tzinfo=UTC), datetime(2024, 1, 1).date(),
        # a DateTimeOffset's ticks are UTC already; its +0060 is only the zone
        datetime(2023, 1, 1, 0, 0, 0, 123000, tzinfo=UTC), "PT12H30M00S")  # fmt: skip
    # a DateTime's offset is added to the ticks (MS-ODATA 2.2.6.3.1)
    assert frame["At"][1] == datetime(1970, 1, 1, 0, 29, 59, tzinfo=UTC)
    assert frame["On"][1] is None and frame["I16"][1] is None


def test_v4_values_iso_dates_offsets_and_ieee754_strings_are_parsed(sandbox):
    client = basic(sandbox, "4").open()
    entity = client._entity("SalesOrder")
    names = ["SalesOrder", "CreationDate", "LastChangeDateTime", "TotalNetAmount"]
    body = b"""{"@odata.context": "$metadata#SalesOrder", "value": [
      {"SalesOrder": "1", "CreationDate": "2024-02-29", "TotalNetAmount": "1234.560",
       "LastChangeDateTime": "2024-03-01T10:00:00.1234567Z"},
      {"SalesOrder": "2", "CreationDate": null, "TotalNetAmount": 99.5,
       "LastChangeDateTime": "2024-03-01T12:00:00+02:00"}]}"""
    frame, link = PageParser("SalesOrder", entity, names, "4").parse(body, 1)
    assert link is None
    assert frame.rows() == [
        ("1", datetime(2024, 2, 29).date(), datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC),
         1234.56),
        ("2", None, datetime(2024, 3, 1, 10, tzinfo=UTC), 99.5)]  # fmt: skip


@pytest.mark.parametrize("version", ["2", "4"])
def test_a_full_read_follows_the_servers_skiptoken_links_and_equals_the_truth(sandbox, version):
    entity_set = VERSIONS[version][1]
    got = read(basic(sandbox, version).open(), entity_set).sort("SalesOrder")
    assert_frame_equal(got, sandbox.frame(entity_set).select(got.columns).sort("SalesOrder"))
    reads = data_reads(sandbox, entity_set)
    # one $top window of 1000, paged by the server at 100: the links it sent, followed as given
    assert len(reads) == 7 and all("$top=1000" in r and "$skip=" not in r for r in reads)
    assert [r.rsplit("$skiptoken=", 1)[-1] for r in reads[1:]] == [
        str(n * 100) for n in range(1, 7)
    ]
    assert all("sap-client=100" in r for r in reads)
    assert got["CustomerPurchaseOrderDate"].null_count() > 0


def test_windows_smaller_than_the_servers_page_use_top_and_skip(sandbox):
    entity_set = "A_SalesOrderItem"
    got = read(basic(sandbox).open(), entity_set, page_size=500)
    keys = ["SalesOrder", "SalesOrderItem"]
    assert_frame_equal(got.sort(keys), sandbox.frame(entity_set).sort(keys))
    reads = data_reads(sandbox, entity_set)
    skips = sorted({r.split("$skip=")[1].split("&")[0] for r in reads if "$skip=" in r})
    # 1399 items: windows of 500, 500 and 399, each paged by the server at 100
    assert skips == ["1000", "500"] and sum("$skiptoken" in r for r in reads) == 4 + 4 + 3
    assert all("$orderby=SalesOrder asc,SalesOrderItem asc" in r for r in reads)


@pytest.mark.parametrize(
    ("version", "literal"),
    [("2", "datetimeoffset'2024-03-01T00:00:00.250000Z'"), ("4", "2024-03-01T00:00:00.250000Z")],
)
def test_incremental_reads_filter_on_the_cursor_in_each_versions_literal(sandbox, version, literal):
    entity_set = VERSIONS[version][1]
    after = datetime(2024, 3, 1, 0, 0, 0, 250000, tzinfo=UTC)
    before = datetime(2024, 5, 1, tzinfo=UTC)
    got = read(basic(sandbox, version).open(), entity_set, cursor_field="LastChangeDateTime",
               cursor_after=after, cursor_before=before, page_size=60)  # fmt: skip
    truth = sandbox.frame(entity_set).filter(pl.col("LastChangeDateTime").is_between(
        after, before, closed="none"))  # fmt: skip
    assert 120 < got.height == truth.height
    assert_frame_equal(got.sort("SalesOrder"), truth.select(got.columns).sort("SalesOrder"))
    reads = data_reads(sandbox, entity_set)
    assert all(f"LastChangeDateTime gt {literal}" in r for r in reads)
    assert all("$orderby=LastChangeDateTime asc,SalesOrder asc" in r for r in reads)
    # each next window starts after the last record read (keyset), not at an offset
    assert "$skip=" not in "".join(reads) and "SalesOrder gt '" in reads[-1]


def test_pushed_filters_are_exact_literals_the_sandbox_evaluates_as_the_local_filter(sandbox):
    client = basic(sandbox).open()
    fields = client.describe("A_SalesOrder").fields
    quoted = next(r["PurchaseOrderByCustomer"] for r in sandbox.rows("A_SalesOrder")
                  if "'" in r["PurchaseOrderByCustomer"])  # fmt: skip
    specs = [FilterSpec(field="TotalNetAmount", operator="between", value=[1000, 20000.5]),
             FilterSpec(field="SalesOrderType", operator="in", value=["OR", "RE"]),
             FilterSpec(field="TransactionCurrency", operator="not_equal_to", value="USD")]  # fmt: skip
    assert all(client.can_push_down(s, fields[s.field]) for s in specs)
    assert [filter_condition(s, fields[s.field], "2") for s in specs] == [
        "(TotalNetAmount ge 1000M and TotalNetAmount le 20000.5M)",
        "(SalesOrderType eq 'OR' or SalesOrderType eq 'RE')",
        "TransactionCurrency ne 'USD'",
    ]
    assert filter_condition(specs[0], fields["TotalNetAmount"], "4") == (
        "(TotalNetAmount ge 1000 and TotalNetAmount le 20000.5)")  # fmt: skip
    got = read(client, "A_SalesOrder", filters=specs).sort("SalesOrder")
    truth = sandbox.frame("A_SalesOrder").filter(
        pl.col("TotalNetAmount").is_between(1000, 20000.5),
        pl.col("SalesOrderType").is_in(["OR", "RE"]), pl.col("TransactionCurrency") != "USD")  # fmt: skip
    assert 0 < got.height == truth.height < 700
    assert_frame_equal(got, truth.select(got.columns).sort("SalesOrder"))
    spec = FilterSpec(field="PurchaseOrderByCustomer", operator="equal_to", value=quoted)
    assert read(client, "A_SalesOrder", filters=[spec])["PurchaseOrderByCustomer"].to_list() == [
        quoted
    ]


def test_filters_that_would_not_be_exact_are_not_pushed_down(sandbox):
    client = basic(sandbox).open()
    orders, items = (
        client.describe("A_SalesOrder").fields,
        client.describe("A_SalesOrderItem").fields,
    )
    refused = [
        (FilterSpec(field="SalesOrderType", operator="greater_than", value="OR"), orders),
        (FilterSpec(field="SalesOrderType", operator="contains", value="O"), orders),
        (FilterSpec(field="TotalNetAmount", operator="equal_to", value="12"), orders),
        (FilterSpec(field="TotalNetAmount", operator="greater_than", value=1e20), orders),
        (FilterSpec(field="CreationDate", operator="equal_to", value="2024-01-01"), orders),
        (FilterSpec(field="CompleteDeliveryIsDefined", operator="equal_to", value=True), orders),
        (FilterSpec(field="CustomerPurchaseOrderDate", operator="is_null"), orders),
        (FilterSpec(field="SalesOrderItemText", operator="equal_to", value="x"), items),  # sap:filterable="false"  # noqa: E501
    ]  # fmt: skip
    assert [client.can_push_down(spec, fields[spec.field]) for spec, fields in refused] == [
        False
    ] * 8


def test_the_sandbox_refuses_a_v2_decimal_without_its_suffix_with_sap_s_error_body(sandbox):
    for version, bad in (("2", "TotalNetAmount gt 1000.5"), ("4", "TotalNetAmount gt 1000.5M")):
        root, entity_set = VERSIONS[version]
        answer = requests.get(f"{sandbox.url}{root}/{entity_set}", auth=tuple(USER.values()),
                              params={"$filter": bad, "$format": "json"}, timeout=5)  # fmt: skip
        assert answer.status_code == 400
        error = answer.json()["error"]
        message = error["message"]["value"] if version == "2" else error["message"]
        text = describe_error(Answer(400, answer.headers, answer.content))
        assert message in text and "(/IWBEP/CM_MGW_RT/044)" in text and "1000.5" in text


@pytest.mark.parametrize("version", ["2", "4"])
def test_sap_s_error_messages_are_surfaced_naming_the_connection(sandbox, version):
    with pytest.raises(AuthError) as refused:
        basic(sandbox, version, sap_client="200").open().check()
    assert "connection 'sap'" in str(refused.value)
    assert "Client 200 is not available in this system (/IWFND/CM_CONSUMER/101)" in str(
        refused.value
    )
    entity_set = VERSIONS[version][1]
    sandbox.inject("503", count=2, path_contains=f"/{entity_set}?", retry_after=0)
    with pytest.raises(TransientError, match=r"answered 503: Service unavailable \(/IWFND/CM_BEC"):
        read(basic(sandbox, version, max_attempts=2).open(), entity_set)


def test_wrong_basic_credentials_are_an_auth_error_naming_the_connection_not_the_password(sandbox):
    with pytest.raises(AuthError) as refused:
        basic(sandbox, password="wrong-password").open().check()
    message = str(refused.value)
    assert "connection 'sap'" in message and "refused the credentials" in message
    assert "wrong-password" not in message and "Logon failed" in message


def test_wrong_oauth_client_secret_is_an_auth_error_naming_the_connection(sandbox):
    with pytest.raises(AuthError) as refused:
        oauth(sandbox, client_secret="wrong-secret").open().check()
    assert "connection 'sap'" in str(refused.value) and "Bad credentials" in str(refused.value)
    assert "wrong-secret" not in str(refused.value)


@pytest.mark.parametrize("version", ["2", "4"])
def test_an_expired_oauth_token_is_renewed_mid_read(sandbox, version, caplog):
    entity_set = VERSIONS[version][1]
    sandbox.inject("expire_token", path_contains=f"/{entity_set}?", after=2)
    sandbox.inject("429", path_contains=f"/{entity_set}?", after=3, retry_after=0.1)
    client = oauth(sandbox, version).open()
    with caplog.at_level(logging.DEBUG):
        got = read(client, entity_set, page_size=250)
    assert got.height == 700 and client.http.stats.reauthentications == 1
    assert client.http.stats.retries == 1  # the 429, after its Retry-After
    assert sandbox.requests.count("/oauth/token") == 2
    assert "tests-secret" not in caplog.text and "Bearer" not in caplog.text


def test_a_token_past_its_lifetime_is_renewed(sandbox):
    with SapODataSandbox(records=20, token_lifetime=0.3, **CLIENT) as short:
        client = oauth(short).open()
        assert read(client, "A_SalesOrder").height == 20
        time.sleep(0.4)
        assert read(client, "A_SalesOrder").height == 20
        assert short.requests.count("/oauth/token") == 2


def test_an_unknown_field_or_entity_set_is_named_with_a_suggestion(sandbox):
    client = basic(sandbox).open()
    with pytest.raises(UnknownField) as unknown:
        read(client, "A_SalesOrder", fields=["SalesOrder", "TotalNetAmout"])
    assert str(unknown.value) == ("connection 'sap': source.fields: 'TotalNetAmout' is not a field "
                                  "of A_SalesOrder (did you mean 'TotalNetAmount'?)")  # fmt: skip
    with pytest.raises(
        UnknownObject,
        match="'A_SalesOrders' is not an entity set of .*"
        r"API_SALES_ORDER_SRV \(did you mean 'A_SalesOrder'",
    ):
        client.describe("A_SalesOrders")
    with pytest.raises(ConnectorError, match="CreationDate .* is not a filterable date-time"):
        read(client, "A_SalesOrder", cursor_field="CreationDate")


@pytest.mark.parametrize("version", ["2", "4"])
def test_a_malformed_page_is_retried_and_then_named(sandbox, version):
    entity_set = VERSIONS[version][1]
    sandbox.inject("malformed", path_contains=f"/{entity_set}?", after=1)
    assert read(basic(sandbox, version).open(), entity_set, page_size=250).height == 700
    sandbox.inject("malformed", count=2, path_contains=f"/{entity_set}?", after=1)
    with pytest.raises(MalformedResponse) as malformed:
        read(basic(sandbox, version, max_attempts=2).open(), entity_set, page_size=250)
    assert f"connection 'sap': {entity_set}:" in str(malformed.value)
    assert f"page 2 of {entity_set} is not valid JSON" in str(malformed.value)


def test_a_value_that_does_not_parse_names_the_record_and_property_not_the_value(sandbox):
    entity = basic(sandbox).open()._entity("A_SalesOrder")
    parser = PageParser("A_SalesOrder", entity, ["SalesOrder", "LastChangeDateTime"], "2")
    body = b'{"d": {"results": [{"SalesOrder": "17", "LastChangeDateTime": "2024-01-01"}]}}'
    with pytest.raises(MalformedResponse) as bad:
        parser.parse(body, 3)
    assert str(bad.value) == ('page 3 of A_SalesOrder: record SalesOrder=17: LastChangeDateTime '
                              'is not a valid Edm.DateTimeOffset (expected "/Date(<milliseconds>)/")')  # fmt: skip
    nested = b'{"d": {"results": [{"SalesOrder": "17", "LastChangeDateTime": {"v": 1}}]}}'
    with pytest.raises(
        MalformedResponse,
        match="record 17: field LastChangeDateTime should be a "
        "primitive Edm.DateTimeOffset but is a JSON dict",
    ):
        parser.parse(nested, 1)
    with pytest.raises(MalformedResponse, match="page 1 of A_SalesOrder has no 'd.results' list"):
        parser.parse(b'{"value": []}', 1)
    with pytest.raises(MalformedResponse, match="page 1 of A_SalesOrder is not an OData v2 coll"):
        parser.parse(b'{"d": {"results": {}}}', 1)


def test_a_next_link_to_another_origin_is_refused(sandbox):
    client = basic(sandbox).open()
    assert client._same_origin("A_SalesOrder?$skiptoken=1").startswith(sandbox.url + V2_ROOT)
    with pytest.raises(MalformedResponse, match="leads to another origin"):
        client._same_origin("https://elsewhere.example/A_SalesOrder?$skiptoken=1")


def test_sap_s_pyodata_client_reads_the_v2_service(sandbox):
    session = requests.Session()
    session.auth = tuple(USER.values())
    service = pyodata.Client(sandbox.url + V2_ROOT, session)  # reads $metadata
    query = (service.entity_sets.A_SalesOrder.get_entities()
             .filter("TotalNetAmount gt 1000M and SalesOrderType eq 'OR'")
             .order_by("LastChangeDateTime desc,SalesOrder desc").skip(10).top(150)
             .count(inline=True))  # fmt: skip
    first = query.execute()
    rest = service.entity_sets.A_SalesOrder.get_entities().next_url(first.next_url).execute()
    truth = (sandbox.frame("A_SalesOrder")
             .filter(pl.col("TotalNetAmount") > 1000, pl.col("SalesOrderType") == "OR")
             .sort("LastChangeDateTime", "SalesOrder", descending=True))  # fmt: skip
    assert first.total_count == truth.height
    assert len(first) == 100 and len(rest) == 50 and rest.next_url is None  # the server's page
    got = [(o.SalesOrder, o.LastChangeDateTime, float(o.TotalNetAmount), o.CreationDate.date())
           for o in [*first, *rest]]  # fmt: skip
    assert got == truth.slice(10, 150).select(
        "SalesOrder", "LastChangeDateTime", "TotalNetAmount", "CreationDate").rows()  # fmt: skip
    assert any("$skiptoken=100" in r and "$inlinecount=allpages" in r for r in sandbox.requests)
    assert service.entity_sets.A_SalesOrder.get_entities().count().execute() == 700


def test_the_example_flow_reads_changed_standard_orders_into_the_lake(
    sandbox, tmp_path, instance, monkeypatch
):
    flow = "sap_sales_orders_to_lake"
    monkeypatch.setenv("SAP_SANDBOX_SERVICE_URL", sandbox.url + V2_ROOT)
    monkeypatch.setenv("SAP_SANDBOX_USERNAME", USER["username"])
    monkeypatch.setenv("SAP_SANDBOX_PASSWORD", USER["password"])
    project = copy_project(tmp_path)
    result = run_flow(project, instance, flow)
    assert result.success, failure_message(result)
    wanted = sandbox.frame("A_SalesOrder").filter(pl.col("SalesOrderType").is_in(["OR", "CBFD"]))
    records = materialization(result, flow, "records")
    assert records["records_read"] == wanted.height  # the type filter ran at the server
    assert materialization(result, flow, "extracted")["filters_pushed_down"] == 1
    table = Lake(project.lake_dir).scan(flow).collect().sort("SalesOrder")
    assert table["SalesOrder"].to_list() == sorted(wanted["SalesOrder"])
    assert table.schema["LastChangeDateTime"] == TIME and table.schema["net_amount"] == pl.Float64
    assert any("SalesOrderType eq 'OR' or SalesOrderType eq 'CBFD'" in r for r in sandbox.requests)

    sandbox.requests.clear()
    again = run_flow(project, instance, flow)  # incremental: nothing changed since
    assert materialization(again, flow, "records")["records_read"] == 0
    mark = wanted["LastChangeDateTime"].max().strftime("%Y-%m-%dT%H:%M:%S.%f")
    assert any(f"LastChangeDateTime gt datetimeoffset'{mark}Z'" in r for r in sandbox.requests)
