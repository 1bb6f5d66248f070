"""AppFlow's flowErrorDeactivationThreshold: after `failure_policy.pause_after` failed runs in a
row, a flow's schedule or sensor requests no more runs and says why on each tick, until a run
of the flow succeeds (by hand: `flowbridge run`, or Materialize in the UI)."""

from __future__ import annotations

import dagster as dg

from flow_assets.cursor import records_key
from flow_assets.spec.models import FlowSpec
from flow_assets.transforms.tasks import without_samples

FLOW_TAG = "flowbridge/flow"  # every run of a flow's job carries it


def failed_in_a_row(instance: dg.DagsterInstance, flow: FlowSpec, limit: int) -> list[str]:
    """Run ids of the flow's latest runs that failed with no success since, newest first (at
    most `limit`). A success is a finished run of the flow's job or, from any job (the UI's),
    a materialization of its records."""
    last_ok = instance.get_latest_materialization_event(records_key(flow))
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            tags={FLOW_TAG: flow.name},
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
        ),
        limit=limit,
    )
    failed = []
    for record in records:  # newest first
        if record.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            break
        if last_ok is not None and (record.end_time or 0) < last_ok.timestamp:
            break
        failed.append(record.dagster_run.run_id)
    return failed


def pause_reason(instance: dg.DagsterInstance, flow: FlowSpec) -> str | None:
    """Why the flow's trigger requests nothing now, or None."""
    threshold = flow.failure_policy.pause_after
    if threshold is None:
        return None
    failed = failed_in_a_row(instance, flow, threshold)
    if len(failed) < threshold:
        return None
    return (
        f"paused: the last {threshold} runs of flow {flow.name} failed (failure_policy."
        f"pause_after); the latest, {failed[0]}: {last_error(instance, failed[0])}. Fix the "
        f"cause and run it once by hand (flowbridge run {flow.name}, or Materialize): a "
        "success resumes it"
    )


def last_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first failed step's message, first line, without sample values."""
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = event.dagster_event.step_failure_data.error if event.dagster_event else None
        if error is not None:
            while error.cause is not None:  # Dagster wraps what the IO manager raised
                error = error.cause
            text = error.message.strip().splitlines()
            return without_samples(text[0] if text else "")[:300]
    return "(no step failed: see the run's log)"
