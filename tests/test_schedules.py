"""Triggers in the flow file: a schedule's offset written into its cron expression, its start
honoured by the schedule, and the event trigger's form."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from flow_assets.schedule_timing import OffsetError, offset_cron
from flow_assets.schedules import schedule_for
from flow_assets.spec import FlowFileError
from flow_assets.spec.models import Event, FlowSpec, Schedule


@pytest.mark.parametrize(
    ("cron", "minutes", "shifted"),
    [
        ("0 0 * * *", 90, "30 1 * * *"),  # rate(1 day), 90 minutes later
        ("0 6 * * 1-5", 15, "15 6 * * 1-5"),
        ("0 */2 * * *", 30, "30 */2 * * *"),
        ("0 */2 * * *", 90, "30 1-23/2 * * *"),
        ("*/15 * * * *", 20, "5-50/15 * * * *"),  # every hour alike: wraps within the hour
        ("0 23 * * *", 90, "30 0 * * *"),  # every day alike: wraps past midnight
        ("0,30 9-17 * * 1-5", 10, "10,40 9-17 * * 1-5"),
        ("5/10 * * * *", 3, "8-58/10 * * * *"),
        ("0 0 * * *", 0, "0 0 * * *"),
    ],
)
def test_offset_shifts_the_cron_expression(cron, minutes, shifted):
    assert offset_cron(cron, minutes) == shifted


@pytest.mark.parametrize(
    ("cron", "minutes", "why"),
    [
        ("*/15 6 * * *", 20, "different minutes in different hours"),
        ("0 23 * * 1-5", 90, "past midnight, onto other days"),
        ("0 MON * * *", 5, "is not numbers, ranges and steps"),
    ],
)
def test_offset_that_cron_cannot_say_is_an_error(cron, minutes, why):
    with pytest.raises(OffsetError, match=why):
        offset_cron(cron, minutes)


def flow(trigger: str) -> FlowSpec:
    return FlowSpec.model_validate(
        {
            "name": "timed",
            "source": {"connection": "salesforce_sandbox", "object": "Opportunity"},
            "trigger": yaml.safe_load(trigger),
        }
    )


@dg.asset
def _thing() -> None: ...


JOB = dg.define_asset_job("timed_job", selection=[_thing])


def test_schedule_runs_offset_minutes_after_the_tick_and_not_before_start():
    spec = flow(
        "{schedule: 'rate(1 day)', timezone: America/New_York, "
        "start: 2025-01-02T06:00:00, offset_minutes: 90}"
    )
    assert spec.trigger.start == datetime(2025, 1, 2, 11, tzinfo=UTC)  # read in New York
    schedule = schedule_for(spec, Path("timed.yaml"), JOB)
    assert (schedule.cron_schedule, schedule.execution_timezone) == (
        "30 1 * * *",
        "America/New_York",
    )

    def tick(at: datetime):
        return schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=at))

    early = tick(datetime(2025, 1, 2, 6, 30, tzinfo=UTC))  # 01:30 in New York, before 06:00
    assert early.run_requests == []
    assert early.skip_message == "the schedule starts at 2025-01-02T06:00:00-05:00; no run before"
    assert len(tick(datetime(2025, 1, 3, 6, 30, tzinfo=UTC)).run_requests) == 1


def test_an_offset_cron_cannot_say_names_the_field():
    spec = flow("{schedule: '*/15 6 * * *', offset_minutes: 20}")
    with pytest.raises(FlowFileError, match=r"timed.yaml: trigger.offset_minutes: offset_minutes"):
        schedule_for(spec, Path("timed.yaml"), JOB)


def test_schedule_without_start_has_no_gate():
    schedule = schedule_for(flow("{schedule: '0 6 * * *'}"), Path("timed.yaml"), JOB)
    at = datetime(2000, 1, 1, 6, tzinfo=UTC)
    data = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=at))
    assert len(data.run_requests) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{event: source_changes}", Event(event="source_changes")),
        (
            "{event: source_changes, min_interval_minutes: 15, status: on}",  # YAML's on: true
            Event(event="source_changes", min_interval_minutes=15, status="on"),
        ),
        ("{schedule: 'rate(1 hour)', status: on}", Schedule(schedule="rate(1 hour)", status="on")),
        ("on_demand", "on_demand"),
    ],
)
def test_trigger_forms(text, expected):
    assert flow(text).trigger == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{event: source_change}", "'source_change' is not one of: source_changes"),
        ("{event: source_changes, min_interval_minutes: 0}", "greater than or equal to 1"),
        ("{event: source_changes, every: 5}", "unknown key 'every'"),
        ("{schedule: 'rate(1 day)', offset_minutes: -5}", "greater than or equal to 0"),
        ("{schedule: 'rate(1 day)', timezone: Mars/Olympus, start: 2025-01-01T00:00:00}",
         "timezone 'Mars/Olympus' is not an IANA time zone"),
    ],
)  # fmt: skip
def test_trigger_mistakes(tmp_path, text, message):
    from flow_assets.spec import load_flow_file

    path = tmp_path / "timed.yaml"
    path.write_text(
        f"source: {{connection: salesforce_sandbox, object: Opportunity}}\ntrigger: {text}\n"
    )
    with pytest.raises(FlowFileError, match=message) as info:
        load_flow_file(path)
    assert "timed.yaml: trigger." in str(info.value)
