"""The Google Analytics 4 connector's specifics against its sandbox: types from the property's
metadata, runReport bodies (dimensions and metrics, offset paging, date ranges, filters), both
ways to authenticate, Google's error bodies, malformed pages, and Google's own client
(google-analytics-data) pointed at the sandbox to show the sandbox speaks the Data API."""

import json
from datetime import UTC, date, datetime

import polars as pl
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from polars.testing import assert_frame_equal

from flow_assets.connectors import CONNECTION_TYPES, SOURCE_CONNECTORS
from flow_assets.connectors.base import ReadRequest
from flow_assets.connectors.errors import (
    AuthError,
    ConnectorError,
    MalformedResponse,
    RateLimitExceeded,
    UnknownField,
    UnknownObject,
)
from flow_assets.connectors.google_analytics import GoogleAnalyticsConnection, ReportParser
from flow_assets.destinations.lake import Lake
from flow_assets.sandbox.google_analytics import JWT_GRANT, GoogleAnalyticsSandbox
from flow_assets.sandbox.google_analytics import METRICS as PROPERTY_METRICS
from flow_assets.spec.models import FilterSpec
from tests.conftest import copy_project, failure_message, materialization, run_flow, stored_cursor

CLIENT = {"client_id": "tests", "client_secret": "tests-secret"}
DIMS = ["date", "country", "sessionSource", "deviceCategory"]
METRICS = ["activeUsers", "sessions", "engagementRate", "totalRevenue"]


@pytest.fixture(scope="module")
def sandbox():
    with GoogleAnalyticsSandbox(**CLIENT) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(sandbox):
    sandbox.reports.clear()
    sandbox.grants.clear()
    yield
    pending = sandbox.pending_faults()
    sandbox.reset_faults()
    assert not pending, f"a fault was left pending: {pending}"


def oauth(sandbox, **kwargs) -> GoogleAnalyticsConnection:
    settings = {"property_id": sandbox.property_id, "base_url": sandbox.url,
                "token_url": f"{sandbox.url}/token", "refresh_token": sandbox.refresh_token,
                "connection_name": "ga4", **CLIENT, **kwargs}  # fmt: skip
    return GoogleAnalyticsConnection(**settings)


def key_file(sandbox, tmp_path, private_key: str | None = None) -> str:
    key = sandbox.service_account_key()
    if private_key is not None:
        key["private_key"] = private_key
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(key))
    return str(path)


def read(client, fields=DIMS + METRICS, **request) -> pl.DataFrame:
    pages = list(client.read(ReadRequest(object="report", fields=list(fields), **request)))
    return pl.concat(pages).sort([f for f in fields if f in DIMS + ["dateHour"]])


def test_registered_as_a_source():
    assert CONNECTION_TYPES["google_analytics"] is GoogleAnalyticsConnection
    assert "google_analytics" in SOURCE_CONNECTORS


def test_describe_types_every_dimension_and_metric_from_the_metadata(sandbox):
    client = oauth(sandbox).open()
    assert client.list_objects() == ["report"]
    fields = client.describe("report").fields
    assert fields["date"].dtype == pl.Date and fields["dateHour"].dtype == pl.Datetime("us")
    assert fields["country"].dtype == pl.String
    assert fields["sessions"].dtype == pl.Int64  # TYPE_INTEGER
    for name in ("engagementRate", "averageSessionDuration", "totalRevenue"):  # float, s, $
        assert fields[name].dtype == pl.Float64
    assert list(fields) == [*sandbox.dimensions, *PROPERTY_METRICS]  # all, dimensions first
    with pytest.raises(UnknownObject, match="did you mean 'report'"):
        client.describe("reports")


def test_a_read_splits_fields_and_pages_by_offset_until_the_row_count(sandbox):
    got = read(oauth(sandbox).open(), page_size=1000)
    truth = sandbox.frame(DIMS, METRICS)
    assert_frame_equal(got, truth)
    assert truth.height == 4320
    assert [r["offset"] for r in sandbox.reports] == [0, 1000, 2000, 3000, 4000]
    first = sandbox.reports[0]
    assert [d["name"] for d in first["dimensions"]] == DIMS
    assert [m["name"] for m in first["metrics"]] == METRICS
    assert first["limit"] == 1000
    assert first["orderBys"] == [{"dimension": {"dimensionName": d}} for d in DIMS]
    assert first["dateRanges"] == [{"startDate": "2015-08-14", "endDate": "today"}]


def test_page_size_is_capped_at_the_apis_largest_page(sandbox):
    got = read(oauth(sandbox).open(), page_size=1_000_000)
    assert got.height == 4320
    assert [(r["offset"], r["limit"]) for r in sandbox.reports] == [(0, 250_000)]


def test_hourly_reports_are_typed_as_datetimes(sandbox):
    got = read(oauth(sandbox).open(), ["dateHour", "sessions"],
               cursor_field="date", cursor_from=datetime(2024, 2, 1, tzinfo=UTC),
               cursor_before=datetime(2024, 2, 3, tzinfo=UTC))  # fmt: skip
    assert got["dateHour"].to_list()[:2] == [datetime(2024, 2, 1, 0), datetime(2024, 2, 1, 1)]
    truth = sandbox.frame(["dateHour"], ["sessions"], date(2024, 2, 1), date(2024, 2, 2))
    assert_frame_equal(got, truth)
    assert got.height == 48


@pytest.mark.parametrize(
    ("window", "date_range"),
    [
        ({"cursor_after": datetime(2024, 3, 10, tzinfo=UTC)}, ("2024-03-11", "today")),
        ({"cursor_after": date(2024, 3, 10)}, ("2024-03-11", "today")),  # a stored Date
        ({"cursor_from": datetime(2024, 2, 1, tzinfo=UTC),
          "cursor_before": datetime(2024, 3, 1, tzinfo=UTC)}, ("2024-02-01", "2024-02-29")),
        ({"cursor_from": datetime(2024, 2, 1, 12, tzinfo=UTC),
          "cursor_before": datetime(2024, 3, 1, 12, tzinfo=UTC)}, ("2024-02-02", "2024-03-01")),
    ],
)  # fmt: skip
def test_the_cursor_window_becomes_the_date_range(sandbox, window, date_range):
    got = read(oauth(sandbox).open(), cursor_field="date", **window)
    assert [(r["dateRanges"][0]["startDate"], r["dateRanges"][0]["endDate"])
            for r in sandbox.reports] == [date_range]  # fmt: skip
    start = date.fromisoformat(date_range[0])
    end = date.max if date_range[1] == "today" else date.fromisoformat(date_range[1])
    assert_frame_equal(got, sandbox.frame(DIMS, METRICS, start, end))
    assert got["date"].min() == start


def test_a_window_without_days_asks_nothing(sandbox):
    client = oauth(sandbox).open()
    future = ReadRequest("report", DIMS, cursor_field="date",
                         cursor_after=datetime(2999, 1, 1, tzinfo=UTC))  # fmt: skip
    empty = ReadRequest("report", DIMS, cursor_field="date",
                        cursor_from=datetime(2024, 2, 1, tzinfo=UTC),
                        cursor_before=datetime(2024, 2, 1, tzinfo=UTC))  # fmt: skip
    assert list(client.read(future)) == [] and list(client.read(empty)) == []
    assert sandbox.reports == []
    with pytest.raises(ConnectorError, match="cursor of a GA4 report is 'date'"):
        list(client.read(ReadRequest("report", DIMS, cursor_field="dateHour")))


def test_exact_filters_on_string_dimensions_are_pushed_down(sandbox):
    client = oauth(sandbox).open()
    fields = client.describe("report").fields
    japan = FilterSpec(field="country", operator="equal_to", value="Japan")
    no_tablets = FilterSpec(field="deviceCategory", operator="not_in", value=["tablet"])
    assert client.can_push_down(japan, fields["country"])
    assert client.can_push_down(no_tablets, fields["deviceCategory"])
    assert not client.can_push_down(FilterSpec(field="sessions", operator="equal_to", value=3),
                                    fields["sessions"])  # fmt: skip
    assert not client.can_push_down(FilterSpec(field="country", operator="contains", value="J"),
                                    fields["country"])  # fmt: skip
    got = read(client, filters=[japan, no_tablets])
    expected = sandbox.frame(DIMS, METRICS).filter(
        (pl.col("country") == "Japan") & (pl.col("deviceCategory") != "tablet")
    )
    assert_frame_equal(got, expected)
    assert sandbox.reports[0]["dimensionFilter"] == {"andGroup": {"expressions": [
        {"filter": {"fieldName": "country", "stringFilter": {
            "matchType": "EXACT", "value": "Japan", "caseSensitive": True}}},
        {"notExpression": {"filter": {"fieldName": "deviceCategory", "inListFilter": {
            "values": ["tablet"], "caseSensitive": True}}}},
    ]}}  # fmt: skip


def test_an_empty_report_is_an_empty_typed_frame(sandbox):
    nowhere = FilterSpec(field="country", operator="equal_to", value="Atlantis")
    got = read(oauth(sandbox).open(), filters=[nowhere])
    assert got.height == 0
    assert got.schema == pl.Schema({**{d: pl.String for d in DIMS}, "date": pl.Date,
                                    "activeUsers": pl.Int64, "sessions": pl.Int64,
                                    "engagementRate": pl.Float64, "totalRevenue": pl.Float64})  # fmt: skip


def test_a_service_account_key_signs_a_jwt_bearer_grant_and_renews_expired_tokens(
    sandbox, tmp_path
):
    client = GoogleAnalyticsConnection(property_id=sandbox.property_id, base_url=sandbox.url,
                                       service_account_key_file=key_file(sandbox, tmp_path),
                                       connection_name="ga4").open()  # fmt: skip
    client.check()
    sandbox.inject("expire_token", path_contains=":runReport", after=1)
    got = read(client, page_size=1000)
    assert_frame_equal(got, sandbox.frame(DIMS, METRICS))
    assert sandbox.grants == [JWT_GRANT, JWT_GRANT]  # the second after the 401
    assert client.http.stats.reauthentications == 1


def test_a_refresh_token_is_exchanged_again_after_a_401(sandbox):
    client = oauth(sandbox).open()
    sandbox.inject("expire_token", path_contains=":runReport", after=2)
    assert_frame_equal(read(client, page_size=1000), sandbox.frame(DIMS, METRICS))
    assert sandbox.grants == ["refresh_token", "refresh_token"]


@pytest.mark.parametrize(
    ("settings", "hint"),
    [
        ({"client_secret": "wrong-secret"}, "invalid_client"),
        ({"refresh_token": "1//revoked-token"}, "issue new ones"),
    ],
)
def test_a_refused_oauth_client_names_the_connection_never_the_secret(sandbox, settings, hint):
    with pytest.raises(AuthError) as failed:
        oauth(sandbox, **settings).open().check()
    message = str(failed.value)
    assert "connection 'ga4'" in message and hint in message
    assert list(settings.values())[0] not in message


def test_a_key_the_service_account_does_not_have_is_refused_clearly(sandbox, tmp_path):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()  # fmt: skip
    connection = GoogleAnalyticsConnection(
        property_id=sandbox.property_id, base_url=sandbox.url, connection_name="ga4",
        service_account_key_file=key_file(sandbox, tmp_path, private_key=pem))  # fmt: skip
    with pytest.raises(AuthError) as failed:
        connection.open().check()
    message = str(failed.value)
    assert "connection 'ga4'" in message and "Invalid JWT Signature" in message
    assert "flowbridge-reader@" in message  # the account, so the user knows which key
    assert "PRIVATE KEY" not in message and pem.splitlines()[1] not in message
    missing = GoogleAnalyticsConnection(property_id="1", service_account_key_file=str(
        tmp_path / "nowhere.json"), connection_name="ga4")  # fmt: skip
    with pytest.raises(AuthError, match="connection 'ga4': cannot use the service account key"):
        missing.open()


def test_a_property_without_access_is_permission_denied(sandbox):
    with pytest.raises(AuthError) as failed:
        oauth(sandbox, property_id="987654321").open().check()
    assert "properties/987654321" in str(failed.value)
    assert "PERMISSION_DENIED: User does not have sufficient permissions" in str(failed.value)


def test_an_unknown_field_names_the_connection_and_suggests_one(sandbox):
    with pytest.raises(UnknownField) as failed:
        read(oauth(sandbox).open(), ["date", "sesions"])
    assert "connection 'ga4'" in str(failed.value)
    assert "'sesions' is not a field of report (did you mean 'sessions'?)" in str(failed.value)


def test_invalid_argument_is_surfaced_with_googles_message(sandbox):
    client = oauth(sandbox).open()
    client.describe("report")  # as the flow was validated...
    archived = sandbox.dimensions.pop("deviceCategory")  # ...then the definition was archived
    try:
        with pytest.raises(ConnectorError) as failed:
            read(client)
    finally:
        sandbox.dimensions["deviceCategory"] = archived
    assert str(failed.value).startswith("connection 'ga4': POST /v1beta/properties/")
    assert "answered 400: INVALID_ARGUMENT: Field deviceCategory is not a valid dimension" in str(
        failed.value
    )


def test_a_malformed_page_names_the_connection_and_offset(sandbox):
    client = oauth(sandbox).open(max_attempts=2)
    sandbox.inject("malformed", count=2, path_contains=":runReport", after=1)
    with pytest.raises(MalformedResponse) as failed:
        read(client, page_size=1000)
    assert "connection 'ga4': the report page at offset 1000 is not valid JSON" in str(failed.value)
    assert "(after 2 attempts)" in str(failed.value)


def test_a_used_up_quota_is_retried_then_reported_as_a_rate_limit(sandbox):
    client = oauth(sandbox).open(max_attempts=3)
    sandbox.inject("429", count=2, path_contains=":runReport", retry_after=0)
    assert read(client, page_size=5000).height == 4320  # two 429s, then the page
    sandbox.inject("429", count=3, path_contains=":runReport", retry_after=0)
    with pytest.raises(RateLimitExceeded) as failed:
        read(client)
    assert "connection 'ga4'" in str(failed.value) and "RESOURCE_EXHAUSTED" in str(failed.value)


def test_googles_own_client_runs_a_report_against_the_sandbox(sandbox):
    data = pytest.importorskip("google.analytics.data_v1beta")
    from google.oauth2.credentials import Credentials

    credentials = Credentials(token=None, refresh_token=sandbox.refresh_token,
                              token_uri=f"{sandbox.url}/token", **CLIENT)  # fmt: skip
    client = data.BetaAnalyticsDataClient(credentials=credentials, transport="rest",
                                          client_options={"api_endpoint": sandbox.url})  # fmt: skip
    answer = client.run_report(data.RunReportRequest(
        property=f"properties/{sandbox.property_id}",
        dimensions=[data.Dimension(name="country")],
        metrics=[data.Metric(name="sessions"), data.Metric(name="engagementRate")],
        date_ranges=[data.DateRange(start_date="2024-01-01", end_date="2024-01-31")],
        order_bys=[data.OrderBy(dimension=data.OrderBy.DimensionOrderBy(dimension_name="country"))],
    ))  # fmt: skip
    rows = [[v.value for v in r.dimension_values] + [v.value for v in r.metric_values]
            for r in answer.rows]  # fmt: skip
    truth = sandbox.frame(["country"], ["sessions", "engagementRate"], date(2024, 1, 1),
                          date(2024, 1, 31))  # fmt: skip
    assert answer.row_count == truth.height == len(rows) == 4
    assert rows == [[c, str(s), str(r)] for c, s, r in truth.iter_rows()]
    assert [h.type_.name for h in answer.metric_headers] == ["TYPE_INTEGER", "TYPE_FLOAT"]
    ours = read(oauth(sandbox).open(), ["country", "sessions", "engagementRate"],
                cursor_field="date", cursor_from=datetime(2024, 1, 1, tzinfo=UTC),
                cursor_before=datetime(2024, 2, 1, tzinfo=UTC))  # fmt: skip
    assert_frame_equal(ours, truth)  # the connector reads what Google's client reads


def test_the_example_flow_lands_the_report_and_rereads_its_last_three_days(
    sandbox, tmp_path, monkeypatch, instance
):
    flow = "ga4_traffic_to_lake"
    for name, value in {"URL": sandbox.url, "TOKEN_URL": f"{sandbox.url}/token",
                        "CLIENT_ID": CLIENT["client_id"], "CLIENT_SECRET": CLIENT["client_secret"],
                        "REFRESH_TOKEN": sandbox.refresh_token}.items():  # fmt: skip
        monkeypatch.setenv(f"GA4_SANDBOX_{name}", value)
    project = copy_project(tmp_path)
    dims = ["date", "country", "sessionSource", "deviceCategory"]
    truth = sandbox.frame(dims, ["activeUsers", "sessions", "screenPageViews", "engagementRate",
                                 "totalRevenue"])  # fmt: skip
    for run in (1, 2):
        sandbox.reports.clear()
        result = run_flow(project, instance, flow)
        assert result.success, failure_message(result)
        assert [c.passed for c in result.get_asset_check_evaluations()] == [True]  # key unique
        lake = Lake(project.lake_dir).scan(flow).collect().select(truth.columns).sort(dims)
        assert_frame_equal(lake, truth)  # the second run's re-read days replaced, not added
        assert stored_cursor(instance, project, flow) == datetime(2024, 4, 29, tzinfo=UTC)
        start = "2024-01-01" if run == 1 else "2024-04-27"  # the last 3 days again
        assert {r["dateRanges"][0]["startDate"] for r in sandbox.reports} == {start}
    assert materialization(result, flow, "records")["records_read"] == 3 * 36


def page(rows, count=None, kind="analyticsData#runReport", dims=("date",), metrics=("sessions",)):
    answer = {"dimensionHeaders": [{"name": d} for d in dims],
              "metricHeaders": [{"name": m, "type": "TYPE_INTEGER"} for m in metrics],
              "rows": [{"dimensionValues": [{"value": v} for v in d],
                        "metricValues": [{"value": v} for v in m]} for d, m in rows],
              "rowCount": len(rows) if count is None else count, "kind": kind}  # fmt: skip
    return json.dumps(answer).encode()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"rows": [', "is not valid JSON"),
        (page([], kind="analyticsData#runPivotReport"), "its kind is not analyticsData#runReport"),
        (page([], dims=("country",)), "its dimensionHeaders are not the dimensions asked for"),
        (page([(["20240101"], ["3"])], count=5), "has 1 rows, but its rowCount is 5"),
        (page([(["20240101"], ["3"]), (["20240102"], [])]), "row 1 has not 1 dimension and 1 metric"),
        (page([(["20240101"], ["3"]), (["2024-01-02"], ["4"])]), "row 1: date is not a valid date"),
        (page([(["20240101"], ["3.5"])]), "row 0: sessions is not a valid TYPE_INTEGER value"),
    ],
)  # fmt: skip
def test_a_page_off_the_documented_shape_is_named_precisely(sandbox, body, problem):
    fields = oauth(sandbox).open().describe("report").fields
    parser = ReportParser("ga4", [fields["date"], fields["sessions"]])
    with pytest.raises(MalformedResponse) as failed:
        parser.parse(body, 0, 10)
    assert str(failed.value).startswith("connection 'ga4': the report page at offset 0")
    assert problem in str(failed.value)
    frame, count = parser.parse(page([(["20240101"], ["3"])]), 0, 10)
    assert count == 1 and frame.row(0) == (date(2024, 1, 1), 3)
