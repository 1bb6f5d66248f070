"""Event triggers: a sensor per flow that asks the source whether records changed and, when
they did, requests one run of the flow per change watermark."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import dagster as dg

from flow_assets.connectors import resource_key
from flow_assets.connectors.base import ReadRequest, latest_change
from flow_assets.connectors.errors import ConnectorError
from flow_assets.cursor import last_cursor
from flow_assets.pausing import pause_reason
from flow_assets.spec.models import Event, FlowSpec
from flow_assets.transforms import pushable_filters

log = logging.getLogger(__name__)
CHANGES_TAG = "flowbridge/changes_through"  # the watermark a sensor-requested run catches up to


class ProbeFailed(Exception):
    """The source could not be asked; the message is safe to show (no secrets)."""


def sensor_name(flow: FlowSpec) -> str:
    return f"{flow.name}_source_changes"


def run_key(watermark: datetime) -> str:
    """One run per change watermark: Dagster never launches a run key twice."""
    return f"changes-through-{watermark.isoformat()}"


def event_sensor(flow: FlowSpec, job, conn_key: str, description: str):  # noqa: ANN201
    """What every event trigger's sensor shares: named `<flow>_<event>`, polling at most every
    min_interval_minutes, on or off as the flow file says, with the source's connection, and
    skipping (saying why) while the flow is paused after failures."""
    trigger = flow.trigger
    assert isinstance(trigger, Event)

    def decorate(evaluate):  # noqa: ANN001, ANN202
        @dg.sensor(
            name=f"{flow.name}_{trigger.event}",
            job=job,
            minimum_interval_seconds=trigger.min_interval_minutes * 60,
            default_status=(
                dg.DefaultSensorStatus.RUNNING
                if trigger.status == "on"
                else dg.DefaultSensorStatus.STOPPED
            ),
            required_resource_keys={conn_key},
            description=description,
        )
        def sensor(context: dg.SensorEvaluationContext):  # noqa: ANN202
            # Only a flow with pause_after looks at its run history.
            paused = flow.failure_policy.pause_after and pause_reason(context.instance, flow)
            if paused:
                return dg.SkipReason(paused)
            return evaluate(context)

        return sensor

    return decorate


def source_changes_sensor(flow: FlowSpec, file: Path, job) -> dg.SensorDefinition:
    """`trigger: {event: source_changes}`: poll the source's change probe, at most every
    `min_interval_minutes`, from the newest change seen (the sensor's cursor, ISO text)."""
    trigger = flow.trigger
    assert isinstance(trigger, Event)
    src = flow.source
    conn_key = resource_key(src.connection)
    field = src.incremental.cursor_field if src.incremental else None
    # A flow that reads deleted records (queryAll) is changed by a delete too.
    probe = ReadRequest(object=src.object, fields=[], filters=pushable_filters(flow),
                        cursor_field=field, include_deleted=src.include_deleted)  # fmt: skip

    @event_sensor(
        flow, job, conn_key,
        (
            f"Asks connection '{src.connection}' every {trigger.min_interval_minutes} min at "
            f"most whether {src.object} records changed ({field or 'the source change stamp'} "
            f"past the newest change seen) and runs {flow.name} once per change. From {file.name}."
        ),
    )  # fmt: skip
    def source_changes(context: dg.SensorEvaluationContext):
        since = _baseline(context, flow)
        try:
            newest = _ask(context, conn_key, replace(probe, cursor_after=since))
        except ProbeFailed as exc:
            return dg.SkipReason(
                f"could not ask connection '{src.connection}' whether {src.object} changed: "
                f"{exc}; the next poll asks again"
            )
        if newest is None or (since is not None and newest <= since):
            seen = since.isoformat() if since else None
            where = f"since {seen}" if seen else "(no records yet)"
            return dg.SensorResult(skip_reason=f"no change to {src.object} {where}", cursor=seen)
        watermark = newest.isoformat()
        request = dg.RunRequest(run_key=run_key(newest), tags={CHANGES_TAG: watermark})
        return dg.SensorResult(run_requests=[request], cursor=watermark)

    return source_changes


def _baseline(context: dg.SensorEvaluationContext, flow: FlowSpec) -> datetime | None:
    """Changes after this moment are new: the later of the newest change the sensor saw and
    the flow's committed high-water mark (a run started by hand may be ahead); before
    either exists, the flow's start when it is a time (else any record is a change)."""
    seen = None
    if context.cursor:
        try:
            seen = datetime.fromisoformat(context.cursor)
        except ValueError:
            log.warning("%s: ignoring a cursor that is not ISO time: %r", sensor_name(flow),
                        context.cursor)  # fmt: skip
    incremental = flow.source.incremental
    committed = last_cursor(context.instance, flow) if incremental else None
    known = [m for m in (seen, committed) if m is not None]
    if known:
        return max(known)
    start = incremental.start if incremental else None
    return start if isinstance(start, datetime) else None


def _ask(context: dg.SensorEvaluationContext, conn_key: str, probe: ReadRequest):
    """The probe's answer, or ProbeFailed naming the problem (network, 401, rate limit...)."""
    try:
        resource = getattr(context.resources, conn_key)
        # One attempt: a failing source must not hold the sensor's tick; the next poll retries.
        client = resource.open(max_attempts=1)
        schema = client.describe(probe.object)
        filters = [
            f for f in probe.filters
            if f.field in schema.fields and client.can_push_down(f, schema.fields[f.field])
        ]  # fmt: skip
        return latest_change(client, replace(probe, filters=filters))
    except ProbeFailed:
        raise
    except (ConnectorError, dg.DagsterError) as exc:
        raise ProbeFailed(str(exc)) from None
    except Exception as exc:  # the sensor loop must go on; the type says enough to look further
        log.exception("%s: change probe failed", conn_key)
        raise ProbeFailed(f"unexpected {type(exc).__name__}") from None
