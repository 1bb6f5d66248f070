"""The Zendesk connector's specifics against its sandbox: types, deleted tickets, the
second-grained start_time, cursor and time-based paging, auth, malformed pages, and zenpy
(the widely used Zendesk client) pointed at the sandbox to show the sandbox speaks Zendesk."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
import requests
from polars.testing import assert_frame_equal

from flow_assets.connectors import CONNECTION_TYPES, SOURCE_CONNECTORS
from flow_assets.connectors.base import ReadRequest
from flow_assets.connectors.errors import AuthError, MalformedResponse, UnknownObject
from flow_assets.connectors.zendesk import FIELDS, PageParser, ZendeskConnection
from flow_assets.sandbox.zendesk import ZendeskSandbox

CLIENT = {"client_id": "tests", "client_secret": "tests-secret"}


@pytest.fixture(scope="module")
def sandbox():
    with ZendeskSandbox(records=300, api_token="tests-api-token", **CLIENT) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(sandbox):
    sandbox.requests.clear()
    for fault in sandbox.pending_faults():
        pytest.fail(f"a fault was left pending by an earlier test: {fault}")
    yield


def oauth(sandbox, **kwargs) -> ZendeskConnection:
    return ZendeskConnection(base_url=sandbox.url, connection_name="zd", **CLIENT, **kwargs)


def api_token(sandbox, token="tests-api-token", **kwargs) -> ZendeskConnection:
    return ZendeskConnection(base_url=sandbox.url, email=sandbox.email, api_token=token,
                             connection_name="zd", **kwargs)  # fmt: skip


def exports(sandbox) -> list[str]:
    return [r for r in sandbox.requests if "/incremental/" in r]


def read(client, object_name, **request) -> pl.DataFrame:
    fields = request.pop("fields", None) or list(client.describe(object_name).fields)
    pages = list(client.read(ReadRequest(object=object_name, fields=fields, **request)))
    return pl.concat(pages).sort("id")


def test_registered_as_a_source():
    assert CONNECTION_TYPES["zendesk"] is ZendeskConnection
    assert "zendesk" in SOURCE_CONNECTORS


@pytest.mark.parametrize("object_name", ["tickets", "users", "organizations"])
def test_each_export_reads_typed_and_equal_to_the_truth(sandbox, object_name):
    client = oauth(sandbox).open()
    got = read(client, object_name, page_size=40, include_deleted=True)
    truth = sandbox.frame(object_name).select(got.columns).sort("id")
    assert_frame_equal(got, truth)
    assert got["id"].is_unique().all()  # time-based paging repeats a second: dropped once
    schema = client.describe(object_name).fields
    assert schema["id"].dtype == pl.Int64
    assert schema["updated_at"].dtype == pl.Datetime("us", "UTC")
    assert schema["tags"].dtype == pl.List(pl.String)
    assert "via" not in schema and "custom_fields" not in schema  # nested objects: not read


def test_type_mapping_of_tickets(sandbox):
    schema = oauth(sandbox).open().describe("tickets").fields
    assert {n: str(f.dtype) for n, f in schema.items() if n in (
        "id", "assignee_id", "has_incidents", "due_at", "subject", "collaborator_ids")} == {
        "id": "Int64", "assignee_id": "Int64", "has_incidents": "Boolean",
        "due_at": "Datetime(time_unit='us', time_zone='UTC')", "subject": "String",
        "collaborator_ids": "List(Int64)",
    }  # fmt: skip
    assert not any(f.filterable for f in schema.values())  # nothing is pushed down


def test_the_organization_export_pages_by_time_and_drops_repeats(sandbox):
    got = read(oauth(sandbox).open(), "organizations", page_size=7)
    exports = [r for r in sandbox.requests if "/incremental/organizations.json" in r]
    assert len(exports) > 3 and all("start_time=" in r for r in exports)
    assert got.height == sandbox.frame("organizations").height


def test_deleted_tickets_are_left_out_unless_asked_for(sandbox):
    client = oauth(sandbox).open()
    truth = sandbox.frame("tickets")
    deleted = truth.filter(pl.col("status") == "deleted")["id"]
    assert deleted.len() > 10
    live = read(client, "tickets", fields=["id", "subject"])
    assert not live["id"].is_in(deleted.implode()).any()
    assert live.height == truth.height - deleted.len()
    everything = read(client, "tickets", fields=["id", "status"], include_deleted=True)
    assert everything.height == truth.height


def test_the_incremental_edge_is_exact_at_second_grain(sandbox):
    truth = sandbox.frame("tickets").filter(pl.col("status") != "deleted")
    # A second shared by two tickets: a cursor there keeps neither, the API being inclusive.
    shared = truth.group_by("updated_at").len().filter(pl.col("len") > 1)["updated_at"].sort()
    edge = shared[shared.len() // 2]
    client = oauth(sandbox).open()
    got = read(client, "tickets", fields=["id", "updated_at"], cursor_field="updated_at",
               cursor_after=edge)  # fmt: skip
    expected = truth.filter(pl.col("updated_at") > edge)
    assert sorted(got["id"]) == sorted(expected["id"])
    assert f"start_time={int(edge.timestamp())}&" in exports(sandbox)[0]
    # Half a second past it: the API is asked from the same second, and the same are kept.
    got = read(client, "tickets", fields=["id"], cursor_field="updated_at",
               cursor_after=edge + timedelta(milliseconds=500))  # fmt: skip
    assert sorted(got["id"]) == sorted(expected["id"])


def test_a_window_between_cursor_from_and_cursor_before(sandbox):
    truth = sandbox.frame("tickets").filter(pl.col("status") != "deleted")
    low, high = truth["updated_at"].sort()[50], truth["updated_at"].sort()[150]
    got = read(oauth(sandbox).open(), "tickets", fields=["id"], cursor_field="updated_at",
               cursor_from=low, cursor_before=high)  # fmt: skip
    expected = truth.filter(pl.col("updated_at").is_between(low, high, closed="left"))
    assert sorted(got["id"]) == sorted(expected["id"])


def test_a_start_time_is_never_younger_than_a_minute(sandbox):
    client = oauth(sandbox).open()
    now = datetime.now(UTC)
    assert read(client, "tickets", fields=["id"], cursor_field="updated_at",
                cursor_after=now - timedelta(seconds=5)).height == 0  # fmt: skip
    start = int(sandbox.requests[-1].split("start_time=")[1].split("&")[0])
    assert start <= now.timestamp() - 60
    # What Zendesk answers to a start_time of the last minute, and the client never sends:
    answer = requests.get(f"{sandbox.url}/api/v2/incremental/tickets/cursor.json",
                          params={"start_time": int(now.timestamp())},
                          auth=(f"{sandbox.email}/token", "tests-api-token"), timeout=5)  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["error"] == "InvalidValue"


def test_paging_follows_after_cursor_until_end_of_stream(sandbox):
    pages = list(oauth(sandbox).open().read(ReadRequest("users", ["id"], page_size=30)))
    exports = [r for r in sandbox.requests if "/incremental/users/cursor.json" in r]
    users = sandbox.frame("users").height
    assert len(exports) == len(pages) == -(-users // 30)
    assert "start_time=0" in exports[0] and all("cursor=" in r for r in exports[1:])
    assert all(p.height <= 30 for p in pages) and sum(p.height for p in pages) == users


def test_a_page_size_over_the_limit_asks_for_1000(sandbox):
    list(oauth(sandbox).open().read(ReadRequest("users", ["id"], page_size=5000)))
    assert "per_page=1000" in sandbox.requests[-1]


def test_a_malformed_page_is_retried_then_named(sandbox):
    client = oauth(sandbox, max_attempts=2).open()
    sandbox.inject("malformed", count=1, path_contains="cursor=")
    assert read(client, "tickets", fields=["id"], page_size=100).height > 0  # retried
    sandbox.inject("malformed", count=2, path_contains="cursor=")
    with pytest.raises(MalformedResponse, match="page 2 of tickets is not valid JSON"):
        read(client, "tickets", fields=["id"], page_size=100)


def test_a_record_of_the_wrong_type_is_named_with_its_field():
    schema = ZendeskConnection(base_url="http://x", oauth_token="t").open().describe("tickets")
    parser = PageParser("tickets", schema, ["id", "assignee_id", "updated_at"])
    body = (b'{"tickets":[{"id":7,"assignee_id":"nobody","updated_at":"2024-01-01T00:00:00Z"}],'
            b'"end_of_stream":true}')  # fmt: skip
    with pytest.raises(MalformedResponse, match="page 3 of tickets: record 7: field assignee_id"):
        parser.parse(body, 3)
    body = b'{"tickets":[{"id":8,"updated_at":"yesterday"}],"end_of_stream":true}'
    with pytest.raises(MalformedResponse, match="record 8: field updated_at is not a Zendesk"):
        parser.parse(body, 1)
    with pytest.raises(MalformedResponse, match="no 'end_of_stream'"):
        parser.parse(b'{"tickets":[]}', 1)


def test_an_api_token_checks_and_a_wrong_one_fails_naming_the_connection(sandbox):
    api_token(sandbox).open().check()
    with pytest.raises(AuthError) as failed:
        api_token(sandbox, token="wrong-token").open().check()
    assert "'zd'" in str(failed.value) and "wrong-token" not in str(failed.value)
    assert "Couldn't authenticate you" in str(failed.value)


def test_an_api_token_refused_mid_read_is_final_not_retried(sandbox):
    # API tokens do not expire: a 401 means revoked, and no re-login can help.
    sandbox.inject("expire_token", path_contains="/incremental/", after=1)
    with pytest.raises(AuthError, match="'zd'"):
        read(api_token(sandbox).open(), "tickets", fields=["id"], page_size=100)
    assert len([r for r in sandbox.requests if "/incremental/" in r]) == 2


def test_an_oauth_client_survives_its_token_expiring(sandbox):
    client = oauth(sandbox).open()
    sandbox.inject("expire_token", path_contains="/incremental/", after=1)
    got = read(client, "users", fields=["id"], page_size=50)
    assert got.height == sandbox.frame("users").height
    assert client.http.stats.reauthentications == 1
    assert sandbox.requests.count("/oauth/tokens") == 2


def test_a_static_oauth_token_works_and_no_credentials_is_refused(sandbox):
    ZendeskConnection(base_url=sandbox.url, oauth_token=sandbox.issue_access_token()).open().check()
    anonymous = ZendeskConnection(base_url=sandbox.url, oauth_token="x").open()
    anonymous.http.auth = None  # no Authorization header: users/me answers an anonymous user
    with pytest.raises(AuthError, match="did not recognise"):
        anonymous.check()


def test_a_429_is_waited_out_with_retry_after(sandbox):
    client = oauth(sandbox).open()
    sandbox.inject("429", path_contains="/incremental/", retry_after=0.2)
    started = datetime.now(UTC)
    read(client, "organizations", fields=["id"])
    assert datetime.now(UTC) - started >= timedelta(seconds=0.2)
    assert client.http.stats.retries == 1


def test_an_unknown_object_is_named_with_a_suggestion(sandbox):
    with pytest.raises(UnknownObject, match="did you mean 'tickets'"):
        oauth(sandbox).open().describe("ticket")
    assert sorted(FIELDS) == oauth(sandbox).open().list_objects()


def test_zenpy_reads_the_sandbox(sandbox, monkeypatch):
    zenpy = pytest.importorskip("zenpy")
    # zenpy builds https://{subdomain}.{domain}; these two variables are its own override.
    monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
    monkeypatch.setenv("ZENPY_FORCE_NETLOC", sandbox.url.removeprefix("http://"))
    client = zenpy.Zenpy(subdomain="sandbox", email=sandbox.email, token="tests-api-token")
    tickets = list(client.tickets.incremental(start_time=0, per_page=100))
    assert sorted(t.id for t in tickets) == sorted(sandbox.frame("tickets")["id"])
    assert any(t.status == "deleted" for t in tickets)
    assert any("cursor=" in r for r in sandbox.requests)  # zenpy followed after_url
    assert client.users.me().email == sandbox.email
