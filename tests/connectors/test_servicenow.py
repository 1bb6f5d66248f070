"""The ServiceNow connector's specifics against its sandbox: types from the dictionary, the
encoded query (escaping, second-grained cursor bounds, pushed filters), offset and Link paging,
auth (basic, OAuth password / refresh / client credentials), 429s and malformed pages.

No vendor client is exercised: pysnow is unmaintained; ServiceNow's own PySNC is not a project
dependency (see the report of issue 7)."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
import requests
from polars.testing import assert_frame_equal

from flow_assets.connectors import CONNECTION_TYPES, SOURCE_CONNECTORS
from flow_assets.connectors.base import ReadRequest
from flow_assets.connectors.errors import (
    AuthError,
    ConnectorError,
    MalformedResponse,
    UnknownObject,
)
from flow_assets.connectors.servicenow import (
    PageParser,
    ServiceNowConnection,
    cursor_conditions,
    encoded_query,
    escape,
    filter_condition,
)
from flow_assets.sandbox.servicenow import ServiceNowSandbox, split_query
from flow_assets.spec.models import FilterSpec

USER = {"username": "tests.user", "password": "tests-password"}
CLIENT = {"client_id": "tests", "client_secret": "tests-secret"}


@pytest.fixture(scope="module")
def sandbox():
    with ServiceNowSandbox(records=300, **USER, **CLIENT) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(sandbox):
    sandbox.requests.clear()
    sandbox.grants.clear()
    for fault in sandbox.pending_faults():
        pytest.fail(f"a fault was left pending by an earlier test: {fault}")
    yield


def oauth(sandbox, **kwargs) -> ServiceNowConnection:
    return ServiceNowConnection(base_url=sandbox.url, connection_name="sn", **USER, **CLIENT,
                                **kwargs)  # fmt: skip


def basic(sandbox, password="tests-password", **kwargs) -> ServiceNowConnection:
    return ServiceNowConnection(base_url=sandbox.url, username=USER["username"],
                                password=password, connection_name="sn", **kwargs)  # fmt: skip


def table_reads(sandbox, table="incident") -> list[str]:
    return [r for r in sandbox.requests if r.startswith(f"/api/now/table/{table}?")]


def read(client, table, **request) -> pl.DataFrame:
    fields = request.pop("fields", None) or list(client.describe(table).fields)
    return pl.concat(list(client.read(ReadRequest(object=table, fields=fields, **request))))


def test_registered_as_a_source():
    assert CONNECTION_TYPES["servicenow"] is ServiceNowConnection
    assert "servicenow" in SOURCE_CONNECTORS


def test_fields_are_typed_from_the_dictionary_with_the_parent_tables(sandbox):
    client = basic(sandbox).open()
    schema = client.describe("change_request").fields
    assert {n: str(f.dtype) for n, f in schema.items() if n in (
        "sys_id", "risk", "u_estimate_hours", "cab_required", "cab_date", "start_date",
        "sys_updated_on", "assigned_to")} == {
        "sys_id": "String", "risk": "Int64", "u_estimate_hours": "Float64",
        "cab_required": "Boolean", "cab_date": "Date",
        "start_date": "Datetime(time_unit='us', time_zone='UTC')",
        "sys_updated_on": "Datetime(time_unit='us', time_zone='UTC')", "assigned_to": "String",
    }  # fmt: skip
    assert "priority" in schema  # from task, which change_request extends
    assert "category" not in schema  # incident's own field
    assert any("sys_dictionary" in r and "nameINchange_request%2Ctask" in r
               for r in sandbox.requests)  # fmt: skip


@pytest.mark.parametrize("table", ["incident", "change_request"])
def test_a_full_read_is_typed_and_equal_to_the_truth(sandbox, table):
    got = read(basic(sandbox).open(), table, page_size=70).sort("sys_id")
    truth = sandbox.frame(table).select(got.columns).sort("sys_id")
    assert_frame_equal(got, truth)
    assert got["description"].null_count() > 0  # "" on the wire is null
    assert all("sysparm_display_value=false" in r and "sysparm_exclude_reference_link=true" in r
               for r in table_reads(sandbox, table))  # fmt: skip


def test_the_encoded_query_escapes_carets_and_orders_by_the_cursor():
    assert escape("a^b^^c") == "a^^b^^^^c"
    assert split_query(escape("a^b") + "^x=1") == ["a^b", "x=1"]  # what the instance parses
    assert encoded_query(["state>2", "short_description=" + escape("disk ^ full")],
                         ["sys_updated_on", "sys_id"]) == (
        "state>2^short_description=disk ^^ full^ORDERBYsys_updated_on^ORDERBYsys_id")  # fmt: skip


def test_the_sandbox_reads_a_doubled_caret_as_a_literal_one(sandbox):
    wanted = sandbox.wire_records("incident")[0]["short_description"]
    assert "^" in wanted
    answer = requests.get(f"{sandbox.url}/api/now/table/incident", auth=tuple(USER.values()),
                          params={"sysparm_query": "short_description=" + escape(wanted),
                                  "sysparm_fields": "number"}, timeout=5)  # fmt: skip
    assert answer.json()["result"] == [{"number": "INC1000000"}]


def test_cursor_bounds_are_rounded_to_the_second_the_right_way():
    moment = datetime(2024, 3, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    request = ReadRequest("incident", ["sys_id"], cursor_field="sys_updated_on",
                          cursor_after=moment, cursor_from=moment, cursor_before=moment)  # fmt: skip
    assert cursor_conditions(request) == [
        "sys_updated_on>2024-03-01 12:00:00",  # > 12:00:00.5 keeps 12:00:01 on: > 12:00:00
        "sys_updated_on>=2024-03-01 12:00:01",
        "sys_updated_on<2024-03-01 12:00:01",  # < 12:00:00.5 keeps 12:00:00
    ]
    whole = moment.replace(microsecond=0)
    assert cursor_conditions(ReadRequest("incident", ["sys_id"], cursor_field="sys_updated_on",
                                         cursor_before=whole)) == [
        "sys_updated_on<2024-03-01 12:00:00"]  # fmt: skip


def test_the_incremental_edge_is_exact_at_second_grain(sandbox):
    truth = sandbox.frame("incident")
    shared = truth.group_by("sys_updated_on").len().filter(pl.col("len") > 1)["sys_updated_on"]
    edge = shared.sort()[shared.len() // 2]
    expected = sorted(truth.filter(pl.col("sys_updated_on") > edge)["sys_id"])
    client = oauth(sandbox).open()
    for after in (edge, edge + timedelta(milliseconds=500)):
        sandbox.requests.clear()
        got = read(client, "incident", fields=["sys_id"], cursor_field="sys_updated_on",
                   cursor_after=after, page_size=500)  # fmt: skip
        assert sorted(got["sys_id"]) == expected
        stamp = edge.strftime("%Y-%m-%d+%H%%3A%M%%3A%S")
        assert f"sysparm_query=sys_updated_on%3E{stamp}%5EORDERBYsys_updated_on" in (
            table_reads(sandbox)[0])  # fmt: skip
    sandbox.requests.clear()
    got = read(client, "incident", fields=["sys_id"], cursor_field="sys_updated_on",
               cursor_before=edge + timedelta(milliseconds=1500))  # fmt: skip
    assert sorted(got["sys_id"]) == sorted(
        truth.filter(pl.col("sys_updated_on") <= edge + timedelta(seconds=1))["sys_id"]
    )
    stamp = (edge + timedelta(seconds=2)).strftime("%Y-%m-%d+%H%%3A%M%%3A%S")
    assert f"sysparm_query=sys_updated_on%3C{stamp}%5E" in table_reads(sandbox)[0]  # rounded up


def test_paging_follows_the_link_header(sandbox):
    pages = list(basic(sandbox).open().read(ReadRequest("incident", ["sys_id"], page_size=60)))
    reads = table_reads(sandbox)
    assert len(pages) == len(reads) == 300 // 60  # no empty last page: the Link said so
    assert [int(r.split("sysparm_offset=")[1].split("&")[0]) for r in reads] == [
        0, 60, 120, 180, 240]  # fmt: skip
    assert sum(p.height for p in pages) == 300


def test_without_a_link_header_offsets_page_until_a_short_page():
    with ServiceNowSandbox(records=140, link_header=False, **USER) as server:
        client = basic(server).open()
        got = read(client, "incident", fields=["sys_id"], page_size=70)
        reads = table_reads(server)
        assert len(reads) == 3  # 70, 70, then an empty page ends it
        assert "sysparm_offset=140" in reads[-1]
        assert got["sys_id"].n_unique() == 140


def test_numeric_and_datetime_filters_are_pushed_down_exactly(sandbox):
    client = basic(sandbox).open()
    fields = client.describe("incident").fields

    def pushable(name, operator, value=None):
        return client.can_push_down(FilterSpec(field=name, operator=operator, value=value),
                                    fields[name])  # fmt: skip

    assert pushable("priority", "less_than_or_equal_to", 2)
    assert pushable("priority", "equal_to", 3)
    assert pushable("u_cost", "between", [10.5, 400])
    assert pushable("opened_at", "greater_than", "2024-02-01T00:00:00Z")
    assert not pushable("opened_at", "greater_than", "2024-02-01T00:00:00.5Z")  # sub-second
    assert not pushable("opened_at", "greater_than", "2024-02-01T00:00:00")  # no offset
    assert not pushable("priority", "less_than", 2.5)  # an integer field and a fraction
    assert not pushable("u_cost", "equal_to", 10.5)
    assert not pushable("priority", "not_equal_to", 1)
    assert not pushable("category", "equal_to", "network")  # text: case-insensitive there
    assert not pushable("active", "equal_to", True)
    spec = FilterSpec(field="u_cost", operator="between", value=[100, 500.25])
    assert filter_condition(spec, fields["u_cost"]) == "u_costBETWEEN100@500.25"
    got = read(client, "incident", fields=["sys_id", "u_cost", "priority"], filters=[
        spec, FilterSpec(field="priority", operator="less_than", value=3)])  # fmt: skip
    truth = sandbox.frame("incident").filter(
        pl.col("u_cost").is_between(100, 500.25) & (pl.col("priority") < 3)
    )
    assert 0 < got.height == truth.height
    assert sorted(got["sys_id"]) == sorted(truth["sys_id"])


def test_a_malformed_page_is_retried_then_named(sandbox):
    client = basic(sandbox, max_attempts=2).open()
    sandbox.inject("malformed", count=1, path_contains="sysparm_offset=100")
    assert read(client, "incident", fields=["sys_id"], page_size=100).height == 300
    sandbox.inject("malformed", count=2, path_contains="sysparm_offset=100")
    with pytest.raises(MalformedResponse, match="page 2 of incident is not valid JSON"):
        read(client, "incident", fields=["sys_id"], page_size=100)


def test_a_value_that_does_not_fit_its_type_is_named_with_its_record_and_field(sandbox):
    schema = basic(sandbox).open().describe("incident")
    parser = PageParser("incident", schema, ["sys_id", "priority", "sys_updated_on"])
    with pytest.raises(MalformedResponse, match="page 3 of incident: record a1: field priority"):
        parser.parse(b'{"result":[{"sys_id":"a1","priority":"high","sys_updated_on":""}]}', 3)
    with pytest.raises(MalformedResponse, match="record b2: field sys_updated_on is not a valid"):
        parser.parse(b'{"result":[{"sys_id":"b2","sys_updated_on":"2024-01-01T00:00:00Z"}]}', 1)
    with pytest.raises(MalformedResponse, match="record c3: field priority should be text"):
        parser.parse(b'{"result":[{"sys_id":"c3","priority":{"value":"1"}}]}', 1)
    with pytest.raises(MalformedResponse, match="no 'result' list"):
        parser.parse(b'{"results":[]}', 1)


def test_basic_auth_checks_and_a_wrong_password_fails_naming_the_connection(sandbox):
    basic(sandbox).open().check()
    with pytest.raises(AuthError) as failed:
        basic(sandbox, password="wrong-password").open().check()
    assert "'sn'" in str(failed.value) and "wrong-password" not in str(failed.value)
    assert "User Not Authenticated" in str(failed.value)  # ServiceNow's error.message


def test_basic_auth_refused_mid_read_is_final_not_retried(sandbox):
    sandbox.inject("expire_token", path_contains="/api/now/table/incident", after=1)
    with pytest.raises(AuthError, match="'sn'"):
        read(basic(sandbox).open(), "incident", fields=["sys_id"], page_size=100)
    assert len(table_reads(sandbox)) == 2


def test_oauth_renews_with_the_refresh_token_then_with_the_password_grant(sandbox):
    client = oauth(sandbox).open()
    sandbox.inject("expire_token", path_contains="/api/now/table/incident", after=1)
    assert read(client, "incident", fields=["sys_id"], page_size=100).height == 300
    assert sandbox.grants == ["password", "refresh_token"]
    sandbox.expire_refresh_tokens()
    sandbox.inject("expire_token", path_contains="/api/now/table/incident", after=1)
    assert read(client, "incident", fields=["sys_id"], page_size=100).height == 300
    assert sandbox.grants == ["password", "refresh_token", "refresh_token", "password"]
    assert client.http.stats.reauthentications == 2


def test_the_client_credentials_grant_and_a_wrong_secret(sandbox):
    ServiceNowConnection(base_url=sandbox.url, **CLIENT).open().check()
    assert sandbox.grants == ["client_credentials"]
    wrong = ServiceNowConnection(base_url=sandbox.url, client_id="tests", client_secret="nope",
                                 connection_name="sn")  # fmt: skip
    with pytest.raises(AuthError, match="'sn'.*access_denied") as failed:
        wrong.open().check()
    assert "nope" not in str(failed.value)


def test_a_429_is_waited_out_with_retry_after(sandbox):
    client = basic(sandbox).open()
    sandbox.inject("429", path_contains="/api/now/table/incident", retry_after=0.2)
    started = datetime.now(UTC)
    read(client, "incident", fields=["sys_id"])
    assert datetime.now(UTC) - started >= timedelta(seconds=0.2)
    assert client.http.stats.retries == 1


def test_unknown_tables_deleted_records_and_settings_fail_clearly(sandbox):
    client = basic(sandbox).open()
    with pytest.raises(UnknownObject, match="did you mean 'incident'"):
        client.describe("incidnt")
    assert {"incident", "change_request", "task"} <= set(client.list_objects())
    with pytest.raises(ConnectorError, match="sys_audit_delete"):
        read(client, "incident", include_deleted=True)
    with pytest.raises(ConnectorError, match="Invalid table nope"):
        client._get("/api/now/table/nope")
    with pytest.raises(ConnectorError, match="either instance or base_url"):
        ServiceNowConnection(**USER).open()
    assert ServiceNowConnection(instance="dev1", **USER).open().root == (
        "https://dev1.service-now.com"
    )
