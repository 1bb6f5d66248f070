"""HubSpot specifics beyond the acceptance suite: type mapping, search-based incremental reads
past the 10,000-result cap, archived records, malformed pages, auth, and the vendor's own
Python client pointed at the sandbox."""

from datetime import UTC, date, datetime

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.connectors.base import FieldInfo, ReadRequest
from flow_assets.connectors.errors import AuthError, MalformedResponse
from flow_assets.connectors.http import Answer
from flow_assets.connectors.hubspot import (
    SEARCH_RESULT_CAP,
    HubSpotConnection,
    PageParser,
    describe_error,
)
from flow_assets.sandbox.hubspot import HubSpotSandbox
from flow_assets.spec.models import FilterSpec

OAUTH = {"client_id": "tests", "client_secret": "tests-secret", "refresh_token": "tests-refresh"}


@pytest.fixture(scope="module")
def sandbox():
    with HubSpotSandbox(records=700, **OAUTH) as server:
        yield server


def oauth_client(sandbox: HubSpotSandbox, **settings):
    return HubSpotConnection(base_url=sandbox.url, connection_name="crm", **OAUTH,
                             **settings).open()  # fmt: skip


def read_all(client, **request) -> pl.DataFrame:
    fields = request.pop("fields", None) or list(client.describe("deals").fields)
    return pl.concat(client.read(ReadRequest(object="deals", fields=fields, **request)))


def test_describe_maps_hubspot_property_types_to_polars(sandbox):
    fields = oauth_client(sandbox).describe("deals").fields
    assert fields["amount"].dtype == pl.Float64()  # number
    assert fields["closedate"].dtype == pl.Datetime("us", "UTC")  # datetime
    assert fields["contract_start_date"].dtype == pl.Date()  # date
    assert fields["hs_is_closed_won"].dtype == pl.Boolean()  # bool
    assert fields["dealstage"].dtype == pl.String()  # enumeration
    assert fields["dealname"].dtype == pl.String()  # string
    assert (fields["id"].dtype, fields["archived"].dtype) == (pl.String(), pl.Boolean())


def test_a_full_read_skips_archived_records_and_include_deleted_adds_them(sandbox):
    client = oauth_client(sandbox)
    truth = sandbox.frame("deals")
    live = read_all(client, page_size=100)
    assert_frame_equal(live.sort("id"), truth.filter(~pl.col("archived")).sort("id"))
    everything = read_all(client, page_size=100, include_deleted=True)
    assert everything["archived"].sum() == truth["archived"].sum() > 0
    assert_frame_equal(everything.sort("id"), truth.sort("id"))


def test_archived_records_are_bounded_by_the_cursor_too(sandbox):
    client = oauth_client(sandbox)
    truth = sandbox.frame("deals")
    saved = truth["hs_lastmodifieddate"].sort()[truth.height // 2]
    got = read_all(client, cursor_field="hs_lastmodifieddate", cursor_after=saved,
                   include_deleted=True)  # fmt: skip
    newer = truth.filter(pl.col("hs_lastmodifieddate") > saved)
    assert sorted(got["id"]) == sorted(newer["id"])
    assert got["archived"].any()


def test_an_incremental_read_past_the_10000_result_cap_requeries_from_the_last_stamp():
    with HubSpotSandbox(records=SEARCH_RESULT_CAP + 2_600, **OAUTH) as big:
        client = oauth_client(big)
        truth = big.frame("deals").filter(~pl.col("archived"))
        assert truth.height > SEARCH_RESULT_CAP + 2_000
        start = datetime(2000, 1, 1, tzinfo=UTC)
        got = read_all(client, cursor_field="hs_lastmodifieddate", cursor_after=start)
        # Without the re-query, paging on past 10,000 answers 400; with a plain GT re-query,
        # records sharing the boundary stamp would be lost; without de-duplication, doubled.
        assert got["id"].is_unique().all()
        assert_frame_equal(got.sort("id"), truth.sort("id"))
        stats = big.stats()
        assert stats["search"] > SEARCH_RESULT_CAP // 200  # paged on past the first query
        assert "list" not in stats  # the incremental read used the search only


def test_search_pages_are_ordered_by_the_cursor(sandbox):
    client = oauth_client(sandbox)
    start = datetime(2000, 1, 1, tzinfo=UTC)
    pages = list(client.read(ReadRequest(object="deals", fields=["id", "hs_lastmodifieddate"],
                                         cursor_field="hs_lastmodifieddate", cursor_after=start,
                                         page_size=50)))  # fmt: skip
    stamps = pl.concat(pages)["hs_lastmodifieddate"]
    assert len(pages) > 2 and stamps.is_sorted()


def test_a_pushed_down_filter_returns_exactly_what_the_local_filter_keeps(sandbox):
    client = oauth_client(sandbox)
    schema = client.describe("deals")
    spec = FilterSpec(field="amount", operator="greater_than", value=250_000)
    assert client.can_push_down(spec, schema.fields["amount"])
    got = read_all(client, filters=[spec])
    expected = sandbox.frame("deals").filter(~pl.col("archived") & (pl.col("amount") > 250_000))
    assert 0 < got.height < sandbox.frame("deals").height
    assert sorted(got["id"]) == sorted(expected["id"])


@pytest.mark.parametrize(
    ("field", "operator", "value", "pushable"),
    [
        ("amount", "less_than_or_equal_to", 10, True),
        ("amount", "between", [1, 2], True),
        ("closedate", "greater_than", "2024-01-01T00:00:00Z", True),
        ("contract_start_date", "equal_to", "2024-01-01", True),
        ("dealname", "equal_to", "Acme deal 1", False),  # HubSpot ignores case in text
        ("amount", "not_equal_to", 10, False),  # NEQ also matches records without a value
        ("closedate", "greater_than", "2024-01-01T00:00:00", False),  # no offset: ambiguous
        ("dealstage", "in", ["closedwon"], False),
    ],
)
def test_push_down_only_where_the_search_means_the_local_filter(
    sandbox, field, operator, value, pushable
):
    client = oauth_client(sandbox)
    info = client.describe("deals").fields[field]
    spec = FilterSpec(field=field, operator=operator, value=value)
    assert client.can_push_down(spec, info) is pushable


def test_an_expired_access_token_is_refreshed_once(sandbox):
    client = oauth_client(sandbox)
    client.check()
    tokens = sandbox.stats().get("token", 0)
    sandbox.inject("expire_token", path_contains="/crm/v3/objects/deals", after=1)
    got = read_all(client, page_size=100)
    assert got.height == sandbox.frame("deals").filter(~pl.col("archived")).height
    assert client.http.stats.reauthentications == 1
    assert sandbox.stats()["token"] == tokens + 1
    assert sandbox.pending_faults() == []


def test_a_truncated_page_is_fetched_again_and_a_persistent_one_names_the_page(sandbox):
    client = oauth_client(sandbox, max_attempts=2)
    sandbox.inject("malformed", count=1, path_contains="/crm/v3/objects/deals", after=1)
    assert read_all(client, page_size=100).height > 0  # fetched again
    sandbox.inject("malformed", count=2, path_contains="/crm/v3/objects/deals", after=1)
    with pytest.raises(MalformedResponse, match=r"list page 2 of deals is not valid JSON"):
        read_all(oauth_client(sandbox, max_attempts=2), page_size=100)
    sandbox.reset_faults()


def test_a_value_that_does_not_fit_its_type_names_page_record_and_property():
    infos = [FieldInfo("id", "id", pl.String()), FieldInfo("amount", "number", pl.Float64())]
    body = b'{"results":[{"id":"7","properties":{"amount":"12.5"}},' \
           b'{"id":"8","properties":{"amount":"lots"}}]}'  # fmt: skip
    with pytest.raises(
        MalformedResponse, match="search page 3 of deals: record 8: property amount"
    ):
        PageParser("deals", infos, "search").parse(body, 3)


def test_dates_written_as_epoch_milliseconds_are_read_too():
    infos = [FieldInfo("id", "id", pl.String()), FieldInfo("d", "date", pl.Date()),
             FieldInfo("t", "datetime", pl.Datetime("us", "UTC"))]  # fmt: skip
    body = (b'{"results":[{"id":"1","properties":{"d":"1572480000000","t":"1572480000123"}},'
            b'{"id":"2","properties":{"d":"2019-10-31","t":"2019-10-31T00:00:00.123Z"}},'
            b'{"id":"3","properties":{"d":"","t":null}}]}')  # fmt: skip
    frame, after = PageParser("deals", infos, "list").parse(body, 1)
    assert after is None
    assert frame["d"].to_list() == [date(2019, 10, 31), date(2019, 10, 31), None]
    moment = datetime(2019, 10, 31, 0, 0, 0, 123_000, tzinfo=UTC)
    assert frame["t"].to_list() == [moment, moment, None]


def test_a_private_app_token_reads_and_a_wrong_one_fails_naming_the_connection(sandbox):
    good = HubSpotConnection(base_url=sandbox.url, access_token=sandbox.access_token).open()
    good.check()
    assert good.describe("contacts").fields["hs_email_optout"].dtype == pl.Boolean()
    bad = HubSpotConnection(base_url=sandbox.url, access_token="pat-na1-wrong",
                            connection_name="crm").open()  # fmt: skip
    with pytest.raises(AuthError) as failed:
        bad.check()
    assert "'crm'" in str(failed.value) and "INVALID_AUTHENTICATION" in str(failed.value)
    assert "pat-na1-wrong" not in str(failed.value)


def test_a_refused_refresh_token_fails_naming_the_connection(sandbox):
    conn = HubSpotConnection(base_url=sandbox.url, client_id=OAUTH["client_id"],
                             client_secret=OAUTH["client_secret"], refresh_token="stolen-token",
                             connection_name="crm")  # fmt: skip
    with pytest.raises(AuthError) as failed:
        conn.open().check()
    assert "'crm'" in str(failed.value) and "BAD_REFRESH_TOKEN" in str(failed.value)
    assert "stolen-token" not in str(failed.value)


def test_rate_limit_answers_are_described_with_their_policy():
    body = (b'{"status":"error","message":"You have reached your secondly limit.",'
            b'"errorType":"RATE_LIMIT","correlationId":"c0","policyName":"SECONDLY"}')  # fmt: skip
    text = describe_error(Answer(429, {}, body))
    assert text == "RATE_LIMIT: You have reached your secondly limit. (policy SECONDLY) " \
                   "[correlationId c0]"  # fmt: skip


def test_secrets_are_declared_and_the_resource_builds_from_env_vars(monkeypatch, sandbox):
    assert set(HubSpotConnection.SECRET_FIELDS) >= {"access_token", "client_secret",
                                                     "refresh_token"}  # fmt: skip
    monkeypatch.setenv("HS_TOKEN", sandbox.access_token)
    resource = HubSpotConnection(base_url=sandbox.url, access_token=dg.EnvVar("HS_TOKEN"))
    with dg.build_resources({"source": resource}) as resources:
        resources.source.open().check()


def test_the_vendors_python_client_works_against_the_sandbox(sandbox):
    hubspot = pytest.importorskip("hubspot")
    from hubspot.crm.contacts import Filter, FilterGroup, PublicObjectSearchRequest

    client = hubspot.HubSpot(access_token=sandbox.access_token, host=sandbox.url)
    page = client.crm.contacts.basic_api.get_page(limit=10, properties=["email", "firstname"])
    truth = sandbox.frame("contacts").filter(~pl.col("archived"))
    assert [c.id for c in page.results] == truth["id"].head(10).to_list()
    assert page.results[0].properties["email"] == truth["email"][0]
    assert page.paging.next.after == "10"
    cut = truth["hs_lastmodifieddate"].sort()[truth.height - 5]
    search = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(
            property_name="hs_lastmodifieddate", operator="GT",
            value=str(int(cut.timestamp() * 1000)))])],
        sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        properties=["email", "hs_lastmodifieddate"], limit=100,
    )  # fmt: skip
    found = client.crm.contacts.search_api.do_search(public_object_search_request=search)
    newer = truth.filter(pl.col("hs_lastmodifieddate") > cut).sort("hs_lastmodifieddate", "id")
    assert found.total == newer.height == len(found.results) > 0
    assert [c.id for c in found.results] == newer["id"].to_list()
