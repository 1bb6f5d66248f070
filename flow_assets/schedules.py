"""AppFlow's schedule expressions (rate(N minutes|hours|days)) and cron, as cron for Dagster."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import dagster as dg

from flow_assets.partitions import partitions_def
from flow_assets.pausing import pause_reason
from flow_assets.schedule_timing import OffsetError, not_before, offset_cron
from flow_assets.spec.errors import FlowFileError
from flow_assets.spec.models import FlowSpec, Schedule

RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$", re.I)


class ScheduleError(ValueError):
    pass


def to_cron(expression: str) -> str:
    """'rate(1 day)' -> '0 0 * * *'; a cron expression is returned as given (Dagster checks it)."""
    m = RATE.match(expression.strip())
    if not m:
        if len(expression.split()) != 5:
            raise ScheduleError(
                f"'{expression}' is neither rate(N minutes|hours|days) nor a 5-field cron "
                "expression such as '0 6 * * *'"
            )
        return expression.strip()
    n, unit = int(m[1]), m[2].lower().rstrip("s")
    if n < 1:
        raise ScheduleError(f"'{expression}': the rate must be at least 1")
    if unit == "minute":
        if 60 % n:
            raise ScheduleError(f"'{expression}': minutes must divide 60; use cron for others")
        return "* * * * *" if n == 1 else f"*/{n} * * * *"
    if unit == "hour":
        if 24 % n:
            raise ScheduleError(f"'{expression}': hours must divide 24; use cron for others")
        return "0 * * * *" if n == 1 else f"0 */{n} * * *"
    if n == 1:
        return "0 0 * * *"
    # Cron cannot count days across month ends; */N restarts each month, as the UI shows.
    return f"0 0 */{n} * *"


def schedule_for(flow: FlowSpec, file: Path, job) -> dg.ScheduleDefinition:
    trigger = flow.trigger
    assert isinstance(trigger, Schedule)
    try:
        cron = offset_cron(to_cron(trigger.schedule), trigger.offset_minutes)
    except OffsetError as exc:
        raise FlowFileError.single(str(file), "trigger.offset_minutes", str(exc)) from None
    except ScheduleError as exc:
        raise FlowFileError.single(str(file), "trigger.schedule", str(exc)) from None
    start = trigger.start  # aware: the model reads a bare time in the timezone
    try:
        return dg.ScheduleDefinition(
            name=f"{flow.name}_schedule",
            cron_schedule=cron,
            execution_timezone=trigger.timezone,
            job=job,
            execution_fn=_evaluation(flow, start),
            description=f"{trigger.schedule} ({cron} {trigger.timezone}), from {file.name}"
            + (f", not before {start.isoformat()}" if start else ""),
            default_status=(
                dg.DefaultScheduleStatus.RUNNING
                if trigger.status == "on"
                else dg.DefaultScheduleStatus.STOPPED
            ),
        )
    except (ScheduleError, dg.DagsterInvalidDefinitionError) as exc:
        raise FlowFileError.single(str(file), "trigger.schedule", str(exc)) from None


def _evaluation(flow: FlowSpec, start: datetime | None):  # noqa: ANN202
    """Each tick: nothing while the flow is paused after failures (saying why) or before its
    start; a partitioned flow's tick runs the latest partition whose window has closed."""
    before = not_before(start) if start else None
    partitions = partitions_def(flow)

    def evaluate(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        # Only a flow with pause_after looks at its run history.
        paused = flow.failure_policy.pause_after and pause_reason(context.instance, flow)
        if paused:
            return dg.SkipReason(paused)
        if before is not None and isinstance(skip := before(context), dg.SkipReason):
            return skip
        if partitions is None:
            return dg.RunRequest()
        keys = partitions.get_partition_keys(current_time=context.scheduled_execution_time)
        if not keys:
            return dg.SkipReason(f"no window of flow {flow.name} has closed yet")
        key = keys[-1]
        return dg.RunRequest(run_key=f"{flow.name}:{key}", partition_key=key)

    return evaluate
