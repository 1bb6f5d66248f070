"""failure_policy: failed steps retried within the run; a flow paused after failed runs in a
row, saying why on its schedule's or sensor's ticks, until a run succeeds; a partitioned
flow's schedule runs the latest closed window."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from flow_assets.definitions import build_definitions
from flow_assets.spec import FlowFileError, load_flow_file
from tests.conftest import failure_message, materialization, run_flow, sensor_tick

FLOW = "salesforce_big_opportunities"  # schedule rate(1 day), lake upsert


def set_policy(project, flow: str, policy: str) -> None:
    path = project.flows_dir / f"{flow}.yaml"
    path.write_text(path.read_text() + f"failure_policy: {policy}\n")


def steps_retried(instance, result) -> int:
    return len(instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY))


def test_a_failed_step_is_retried_within_the_run(project, instance, sf):
    set_policy(project, FLOW, "{retries: 2, retry_delay_seconds: 0}")
    # The daily API limit refuses one query: the HTTP client does not retry that (it is not
    # transient within seconds), so the step fails, and the run's retry reads again.
    sf.inject("limit_exceeded", count=1, path_contains="/query")
    result = run_flow(project, instance, FLOW)
    assert result.success, failure_message(result)
    assert steps_retried(instance, result) == 1
    meta = materialization(result, FLOW, "records")
    assert meta["records_read"] == (
        meta["records_loaded"] + meta["records_filtered"] + meta["records_rejected"]
    )


def test_without_retries_the_same_fault_fails_the_run(project, instance, sf):
    sf.inject("limit_exceeded", count=1, path_contains="/query")
    result = run_flow(project, instance, FLOW)
    assert not result.success
    assert steps_retried(instance, result) == 0


def test_a_flow_file_mistake_is_not_retried(project, instance, sf):
    set_policy(project, FLOW, "{retries: 3, retry_delay_seconds: 0}")
    path = project.flows_dir / f"{FLOW}.yaml"
    path.write_text(path.read_text() + "validation: {model: 'no_such_module:Checks'}\n")
    result = run_flow(project, instance, FLOW)
    assert not result.success
    assert "validation.model: cannot import 'no_such_module'" in failure_message(result)
    assert steps_retried(instance, result) == 0


def tick(project, instance, name: str, at: datetime | None = None):
    defs = build_definitions(project)
    schedule = defs.resolve_schedule_def(name)
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
    )
    return schedule.evaluate_tick(context)


def break_the_lake(project) -> None:
    project.lake_dir.mkdir(parents=True, exist_ok=True)
    (project.lake_dir / "lake.duckdb").mkdir()  # DuckDB cannot open a folder: writes fail


def test_failed_runs_in_a_row_pause_the_schedule_until_a_success(project, instance, sf):
    set_policy(project, FLOW, "{pause_after: 2}")
    schedule = f"{FLOW}_schedule"
    break_the_lake(project)
    assert not run_flow(project, instance, FLOW).success
    assert len(tick(project, instance, schedule).run_requests) == 1  # one failure: not yet
    assert not run_flow(project, instance, FLOW).success
    paused = tick(project, instance, schedule)
    assert paused.run_requests == []
    assert paused.skip_message.startswith(
        f"paused: the last 2 runs of flow {FLOW} failed (failure_policy.pause_after)"
    )
    assert "IO Error: Could not read from file" in paused.skip_message  # the latest's cause

    (project.lake_dir / "lake.duckdb").rmdir()  # fixed; a run by hand resumes the schedule
    assert run_flow(project, instance, FLOW).success
    assert len(tick(project, instance, schedule).run_requests) == 1


def test_failed_runs_pause_an_event_sensor_too(project, instance, sf):
    flow = "salesforce_changes_to_lake"
    set_policy(project, flow, "{pause_after: 1}")
    break_the_lake(project)
    assert not run_flow(project, instance, flow).success
    data = sensor_tick(build_definitions(project), f"{flow}_source_changes", instance)
    assert data.run_requests == []
    assert data.skip_message.startswith(f"paused: the last 1 runs of flow {flow} failed")


def test_a_partitioned_schedule_runs_the_latest_closed_window(project, instance):
    flow = "salesforce_opportunities_by_day"
    path = project.flows_dir / f"{flow}.yaml"
    path.write_text(path.read_text() + "trigger: {schedule: 'rate(1 day)', offset_minutes: 30}\n")
    data = tick(project, instance, f"{flow}_schedule", datetime(2025, 6, 10, 0, 30, tzinfo=UTC))
    (request,) = data.run_requests
    assert request.partition_key == "2025-06-09"
    assert request.run_key == f"{flow}:2025-06-09"

    path.write_text(path.read_text().replace(
        "trigger: {schedule: 'rate(1 day)', offset_minutes: 30}", "trigger: {event: source_changes}"
    ))  # fmt: skip
    with pytest.raises(FlowFileError, match="a change event names no partition"):
        load_flow_file(path)
