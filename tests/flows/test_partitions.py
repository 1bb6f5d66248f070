"""A daily-partitioned flow: each partition pulls exactly its day, staged apart; backfills by
partition or in one run give the same table; partitions never move the incremental cursor."""

import shutil
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.definitions import build_definitions
from flow_assets.destinations.lake import Lake
from flow_assets.destinations.staging_paths import staging_parts
from flow_assets.partitions import check_partition_key, partition_run, partitions_def
from flow_assets.runner import QUIET
from flow_assets.spec.models import FlowSpec
from tests.conftest import failure_message, materialization, run_flow, stored_cursor

FLOW = "salesforce_opportunities_by_day"
# The sandbox's SystemModstamps run evenly over 2024-2025: 3 to 5 records on every day.
DAYS = [date(2025, 6, 2) + timedelta(days=n) for n in range(7)]
DAY = pl.col("SystemModstamp").dt.date()


def truth(sf) -> pl.DataFrame:
    """The seven days' records as queryAll sees them (the flow reads deleted ones too)."""
    return sf.frame("Opportunity").filter(DAY.is_in(DAYS))


def run_partition(project, instance, key: str) -> dg.ExecuteInProcessResult:
    job = build_definitions(project).resolve_job_def(f"{FLOW}_job")
    return job.execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET, **partition_run(key)
    )


def lake_table(project) -> pl.DataFrame:
    return Lake(project.lake_dir).scan(FLOW).collect().sort("Id")


def backfill_by_partition(project, instance, sf) -> None:
    expected = truth(sf)
    for day in DAYS:
        result = run_partition(project, instance, day.isoformat())
        assert result.success, failure_message(result)
        of_day = expected.filter(DAY.eq(day))
        records = materialization(result, FLOW, "records")
        assert records["records_read"] == of_day.height > 0
        assert records["cursor"] == ""  # a partition claims no high-water mark
        folder = project.staging_dir / FLOW / "partitions" / day.isoformat() / "extracted"
        assert sorted(pl.read_parquet(folder / "*.parquet")["Id"]) == sorted(of_day["Id"])


def test_a_per_partition_backfill_delivers_each_day_once(project, instance, sf):
    defs = build_definitions(project)
    for name in ("extracted", "records"):
        assets = defs.resolve_assets_def(dg.AssetKey([FLOW, name]))
        assert assets.backfill_policy == dg.BackfillPolicy.multi_run(1)
        assert isinstance(assets.partitions_def, dg.DailyPartitionsDefinition)

    backfill_by_partition(project, instance, sf)

    table, expected = lake_table(project), truth(sf)
    assert table["Id"].to_list() == sorted(expected["Id"])  # each record once, none missing
    per_day = table.group_by(DAY).len().sort("SystemModstamp")
    assert_frame_equal(per_day, expected.group_by(DAY).len().sort("SystemModstamp"))
    assert stored_cursor(instance, project, FLOW) is None  # partitions never set the cursor


def test_a_single_run_backfill_gives_the_same_table(project, instance, sf):
    backfill_by_partition(project, instance, sf)
    per_partition = lake_table(project)
    shutil.rmtree(project.lake_dir)
    path = project.flows_dir / f"{FLOW}.yaml"
    path.write_text(path.read_text().replace("backfill: per_partition", "backfill: single_run"))
    records = build_definitions(project).resolve_assets_def(dg.AssetKey([FLOW, "records"]))
    assert records.backfill_policy == dg.BackfillPolicy.single_run()

    result = run_partition(project, instance, f"{DAYS[0]}...{DAYS[-1]}")
    assert result.success, failure_message(result)
    assert materialization(result, FLOW, "records")["records_read"] == truth(sf).height
    materialized = [
        event.event_specific_data.materialization.partition
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey([FLOW, "records"])
    ]
    assert materialized == [day.isoformat() for day in DAYS]  # one run, seven partitions
    assert_frame_equal(lake_table(project), per_partition)


def test_a_partition_outside_the_range_is_a_clear_error(project, instance):
    job = build_definitions(project).resolve_job_def(f"{FLOW}_job")
    last = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert check_partition_key(FLOW, job.partitions_def, "2023-12-31") == (
        f"'2023-12-31' is not a partition of flow {FLOW}, whose partitions run from "
        f"2024-01-01 to {last} (a range is FIRST...LAST)"
    )
    assert "first partition comes after its last" in check_partition_key(
        FLOW, job.partitions_def, "2024-03-02...2024-03-01"
    )
    with pytest.raises(dg.DagsterUnknownPartitionError, match="2023-12-31"):
        job.execute_in_process(instance=instance, partition_key="2023-12-31")


def test_partition_runs_never_move_the_cursor(project, instance, sf):
    """Partitions added to an incremental flow for a backfill leave its high-water mark
    alone: without them again, the flow carries on from where it was."""
    path = project.flows_dir / f"{FLOW}.yaml"
    partitioned = path.read_text()
    unpartitioned = "".join(
        line for line in partitioned.splitlines(True) if not line.startswith("partitions:")
    )
    path.write_text(unpartitioned)
    first = run_flow(project, instance, FLOW)
    assert first.success, failure_message(first)
    mark = stored_cursor(instance, project, FLOW)
    assert mark == sf.frame("Opportunity")["SystemModstamp"].max()

    path.write_text(partitioned)
    assert run_partition(project, instance, DAYS[0].isoformat()).success
    path.write_text(unpartitioned)
    assert stored_cursor(instance, project, FLOW) == mark

    second = run_flow(project, instance, FLOW)
    meta = materialization(second, FLOW, "records")
    lookback = sf.frame("Opportunity").filter(
        pl.col("SystemModstamp") > mark - timedelta(hours=2)
    )  # the flow's lookback: 2 hours
    assert meta["records_read"] == lookback.height
    assert meta["cursor"] == mark.isoformat()


def test_hourly_partitions_are_hour_windows_from_the_start():
    flow = FlowSpec.model_validate(
        {
            "name": "hourly",
            "source": {"connection": "c", "object": "Opportunity",
                       "incremental": {"cursor_field": "SystemModstamp"}},
            "partitions": {"by": "hour", "start": "2024-01-01T05:00:00Z"},
        }
    )  # fmt: skip
    definition = partitions_def(flow)
    assert isinstance(definition, dg.HourlyPartitionsDefinition)
    assert definition.get_first_partition_key() == "2024-01-01-05:00"
    window = definition.time_window_for_partition_key("2024-03-01-07:00")
    assert (window.start, window.end) == (
        datetime(2024, 3, 1, 7, tzinfo=UTC),
        datetime(2024, 3, 1, 8, tzinfo=UTC),
    )
    hour = dg.PartitionKeyRange("2024-03-01-07:00", "2024-03-01-07:00")
    assert staging_parts((FLOW, "extracted"), hour)[1:] == ("partitions", hour.start, "extracted")
