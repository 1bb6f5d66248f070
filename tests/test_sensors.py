"""The event trigger's sensor against a sandbox of its own whose records change: cursors, run
keys, skip reasons, and the requested runs delivering exactly the changed records."""

import time
from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pytest

from flow_assets.connectors.base import FieldInfo, ObjectSchema, ReadRequest
from flow_assets.connectors.salesforce import SalesforceConnection
from flow_assets.connectors.salesforce_soql import change_probe_soql
from flow_assets.definitions import build_definitions
from flow_assets.destinations.lake import Lake
from flow_assets.environment import Settings
from flow_assets.runner import QUIET
from flow_assets.sandbox import SalesforceSandbox
from flow_assets.sensors import CHANGES_TAG
from flow_assets.spec.models import FilterSpec
from tests.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    copy_project,
    materialization,
    sensor_tick,
    stored_cursor,
)

FLOW = "salesforce_changes_to_lake"
SENSOR = f"{FLOW}_source_changes"
RECORDS = 400


@pytest.fixture
def sandbox_of_our_own(monkeypatch):
    """A sandbox these tests may change (the session one is shared truth), with its caches on,
    and the example connection's variables pointing at it."""
    with SalesforceSandbox(
        records=RECORDS, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, page_cache_mb=16
    ) as sb:
        monkeypatch.setenv("SALESFORCE_SANDBOX_URL", sb.url)
        monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", CLIENT_SECRET)
        yield sb


@pytest.fixture
def project(tmp_path, sandbox_of_our_own) -> Settings:
    return copy_project(tmp_path)


def evaluate(settings: Settings, instance, cursor: str | None = None):
    """One tick of the flow's sensor, as the daemon evaluates it: run requests, skip, cursor."""
    return sensor_tick(build_definitions(settings), SENSOR, instance, cursor)


def run(settings: Settings, instance, request: dg.RunRequest | None = None):
    job = build_definitions(settings).resolve_job_def(f"{FLOW}_job")
    tags = {**request.tags, "dagster/sensor_name": SENSOR} if request else {}
    return job.execute_in_process(instance=instance, raise_on_error=False, tags=tags,
                                  run_config=QUIET)  # fmt: skip


def lake_table(settings: Settings) -> pl.DataFrame:
    return Lake(settings.lake_dir).scan(FLOW).collect().sort("Id")


def live(sb: SalesforceSandbox) -> pl.DataFrame:
    return sb.frame("Opportunity").filter(~pl.col("IsDeleted"))


def test_a_change_is_run_once_and_lands_exactly(project, instance, sandbox_of_our_own):
    sb = sandbox_of_our_own
    assert run(project, instance).success
    before = lake_table(project)
    assert before.height == RECORDS

    quiet = evaluate(project, instance)  # no sensor cursor yet: from the flow's own cursor
    assert quiet.run_requests == []
    newest = live(sb)["SystemModstamp"].max()
    assert quiet.skip_message == f"no change to Opportunity since {newest.isoformat()}"

    change = sb.change_records("Opportunity", count=7, seed=11, delete=2)
    tick = evaluate(project, instance, quiet.cursor)
    [request] = tick.run_requests
    assert request.run_key == f"changes-through-{change.stamp.isoformat()}"
    assert tick.cursor == change.stamp.isoformat() == request.tags[CHANGES_TAG]
    # Rewound to before the change, the sensor asks for the same run key: Dagster runs it once.
    assert evaluate(project, instance).run_requests[0].run_key == request.run_key

    result = run(project, instance, request)
    assert result.success
    assert materialization(result, FLOW, "records")["records_read"] == 7  # deletes are not read
    after = lake_table(project)
    assert after.height == before.height  # upserted in place: nothing added, nothing removed
    differs = after.join(before, on="Id", suffix="_before").filter(
        pl.any_horizontal(
            pl.col(c).ne_missing(pl.col(f"{c}_before")) for c in after.columns if c != "Id"
        )
    )
    assert sorted(differs["Id"]) == change.updated
    truth = live(sb).filter(pl.col("Id").is_in(change.updated)).sort("Id")
    landed = after.filter(pl.col("Id").is_in(change.updated))
    for column in ("Amount", "StageName", "Probability", "IsClosed", "IsWon"):
        assert landed[column].to_list() == truth[column].to_list(), column
    assert set(landed["SystemModstamp"]) == {change.stamp}

    again = evaluate(project, instance, tick.cursor)
    assert again.run_requests == []
    assert again.skip_message == f"no change to Opportunity since {change.stamp.isoformat()}"
    assert again.cursor == tick.cursor


def test_a_delete_alone_starts_no_run_unless_the_flow_reads_deletes(
    project, instance, sandbox_of_our_own
):
    assert run(project, instance).success
    cursor = evaluate(project, instance).cursor
    gone = sandbox_of_our_own.change_records("Opportunity", count=0, seed=5, delete=3)
    tick = evaluate(project, instance, cursor)
    assert tick.run_requests == [] and tick.cursor == cursor
    # A flow that reads deleted records (queryAll) is changed by a delete.
    path = project.flows_dir / f"{FLOW}.yaml"
    path.write_text(
        path.read_text().replace(
            "  object: Opportunity\n", "  object: Opportunity\n  include_deleted: true\n"
        )
    )
    [request] = evaluate(project, instance, cursor).run_requests
    assert request.run_key == f"changes-through-{gone.stamp.isoformat()}"


def test_a_failed_run_keeps_the_cursor_and_the_next_run_delivers(
    project, instance, sandbox_of_our_own
):
    sb = sandbox_of_our_own
    assert run(project, instance).success
    committed = stored_cursor(instance, project, FLOW)
    quiet = evaluate(project, instance).cursor
    first = sb.change_records("Opportunity", count=4, seed=1)
    tick = evaluate(project, instance, quiet)
    [request] = tick.run_requests

    database = project.lake_dir / "lake.duckdb"
    database.rename(database.with_suffix(".aside"))
    database.mkdir()  # DuckDB cannot open a folder: the destination write fails
    failed = run(project, instance, request)
    assert not failed.success
    assert stored_cursor(instance, project, FLOW) == committed
    # That change was requested once; without a new one the sensor asks for nothing more.
    assert evaluate(project, instance, tick.cursor).run_requests == []

    database.rmdir()
    database.with_suffix(".aside").rename(database)
    second = sb.change_records("Opportunity", count=3, seed=2)
    [request] = evaluate(project, instance, tick.cursor).run_requests
    assert request.run_key == f"changes-through-{second.stamp.isoformat()}"
    result = run(project, instance, request)
    assert result.success
    both = sorted(set(first.updated) | set(second.updated))
    assert materialization(result, FLOW, "records")["records_read"] == len(both)
    landed = lake_table(project).filter(pl.col("Id").is_in(both))
    truth = live(sb).filter(pl.col("Id").is_in(both)).sort("Id")
    assert landed["Amount"].to_list() == truth["Amount"].to_list()
    assert stored_cursor(instance, project, FLOW) == second.stamp


def test_first_tick_without_any_cursor_starts_the_first_run(project, instance, sandbox_of_our_own):
    tick = evaluate(project, instance)  # no run yet: from the flow's incremental start
    [request] = tick.run_requests
    newest = live(sandbox_of_our_own)["SystemModstamp"].max()
    assert request.run_key == f"changes-through-{newest.isoformat()}"
    garbled = evaluate(project, instance, "not a time")  # a cursor edited by hand is ignored
    assert garbled.run_requests[0].run_key == request.run_key
    ahead = evaluate(project, instance, datetime(2030, 1, 1, tzinfo=UTC).isoformat())
    assert ahead.run_requests == []
    path = project.flows_dir / f"{FLOW}.yaml"  # a start after every record: nothing to run
    path.write_text(path.read_text().replace("2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z"))
    later = evaluate(project, instance)
    assert later.skip_message == "no change to Opportunity since 2030-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"kind": "limit_exceeded"}, "REQUEST_LIMIT_EXCEEDED"),
        ({"kind": "503", "retry_after": 120}, "answered 503"),  # no waiting out Retry-After
        ({"kind": "reset"}, "ConnectionError"),
    ],
)
def test_a_failing_probe_skips_the_tick(project, instance, sandbox_of_our_own, fault, says):
    sandbox_of_our_own.inject(**fault, path_contains="/query")
    started = time.monotonic()
    tick = evaluate(project, instance, "2025-06-01T00:00:00+00:00")
    assert time.monotonic() - started < 20
    assert tick.run_requests == []
    assert tick.cursor == "2025-06-01T00:00:00+00:00"  # unchanged
    assert tick.skip_message.startswith(
        "could not ask connection 'salesforce_sandbox' whether Opportunity changed: "
    )
    assert says in tick.skip_message and tick.skip_message.endswith("the next poll asks again")


def test_refused_credentials_skip_without_showing_the_secret(project, instance, monkeypatch):
    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", "not-the-secret-4711")
    tick = evaluate(project, instance)
    assert tick.run_requests == []
    assert "authentication failed" in tick.skip_message and "invalid_client" in tick.skip_message
    assert "4711" not in tick.skip_message


def test_unreachable_source_skips_and_a_missing_setting_fails_the_tick(
    project, instance, monkeypatch
):
    monkeypatch.setenv("SALESFORCE_SANDBOX_URL", "http://127.0.0.1:9")  # discard port: refused
    assert "ConnectionError" in evaluate(project, instance).skip_message
    # Dagster builds the sensor's resources before asking it: the tick fails naming the
    # variable, and the daemon goes on with the next tick.
    monkeypatch.delenv("SALESFORCE_SANDBOX_CLIENT_SECRET")
    with pytest.raises(dg.DagsterInvalidConfigError, match="SALESFORCE_SANDBOX_CLIENT_SECRET"):
        evaluate(project, instance)


def test_sensor_settings_come_from_the_flow_file(project):
    sensor = build_definitions(project).resolve_sensor_def(SENSOR)
    assert (sensor.job_name, sensor.minimum_interval_seconds) == (f"{FLOW}_job", 300)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    path = project.flows_dir / f"{FLOW}.yaml"
    path.write_text(
        path.read_text().replace(
            "min_interval_minutes: 5, status: off", "min_interval_minutes: 1, status: on"
        )
    )
    sensor = build_definitions(project).resolve_sensor_def(SENSOR)
    assert sensor.minimum_interval_seconds == 60
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_probe_applies_the_pushed_down_filters(sandbox_of_our_own):
    sb = sandbox_of_our_own
    connection = SalesforceConnection(
        login_url=sb.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    client = connection.open()
    truth = live(sb)
    after = truth["SystemModstamp"].sort()[RECORDS // 2]
    big = FilterSpec(field="Amount", operator="greater_than", value=10000)
    request = ReadRequest("Opportunity", [], [big], "SystemModstamp", after)
    expected = truth.filter((pl.col("Amount") > 10000) & (pl.col("SystemModstamp") > after))
    assert client.latest_change(request) == expected["SystemModstamp"].max()
    small = truth.filter(pl.col("Amount") <= 10000)["SystemModstamp"].max()
    assert small != expected["SystemModstamp"].max()  # the filter decides the answer
    late = ReadRequest("Opportunity", [], [], None, truth["SystemModstamp"].max())
    assert client.latest_change(late) is None  # no cursor field: SystemModstamp


def test_probe_is_one_query_for_at_most_one_record():
    info = {
        "Amount": FieldInfo("Amount", "currency", pl.Float64()),
        "SystemModstamp": FieldInfo("SystemModstamp", "datetime", pl.Datetime("us", "UTC")),
    }
    schema = ObjectSchema("Opportunity", info)
    big = FilterSpec(field="Amount", operator="greater_than", value=10000)
    after = datetime(2025, 6, 1, 12, 30, 15, 250000, tzinfo=UTC)
    request = ReadRequest("Opportunity", [], [big], "SystemModstamp", after)
    assert change_probe_soql(request, schema) == (
        "SELECT Id, SystemModstamp FROM Opportunity WHERE Amount > 10000 "
        "AND SystemModstamp > 2025-06-01T12:30:15.250Z "
        "ORDER BY SystemModstamp DESC NULLS LAST LIMIT 1"
    )
