"""The example flow from the sandbox into the lake, compared record for record with the source."""

import hashlib
import re

import polars as pl

from flow_assets.destinations.lake import Lake
from tests.conftest import live_opportunities, materialization, run_flow, stored_cursor

FLOW = "salesforce_big_opportunities"


def test_example_flow_lands_every_record_accounted_for(project, instance, sf):
    result = run_flow(project, instance, FLOW)
    assert result.success
    meta = materialization(result, FLOW, "records")
    truth = live_opportunities(sf).filter(pl.col("Amount") > 10_000)

    # Nothing lost: every record read is loaded, filtered or rejected, and the counts add up.
    assert meta["records_read"] == truth.height
    assert meta["records_read"] == (
        meta["records_loaded"] + meta["records_filtered"] + meta["records_rejected"]
    )
    lake = Lake(project.lake_dir)
    loaded = lake.scan(FLOW).collect()
    rejected = lake.scan(f"{FLOW}__rejected").collect()
    assert loaded.height == meta["records_loaded"]
    assert rejected.height == meta["records_rejected"] > 0  # the sandbox plants bad emails
    assert loaded["Id"].is_unique().all()
    assert sorted(loaded["Id"].to_list() + rejected["Id"].to_list()) == sorted(truth["Id"])
    assert set(rejected["_fb_reason"]) == {"Email__c: not a valid email"}

    # Values arrive typed and intact; masked fields are masked, in both tables.
    joined = loaded.join(truth, on="Id")
    assert joined.schema["close_date"] == pl.Date
    assert joined.schema["SystemModstamp"] == pl.Datetime("us", "UTC")
    assert (joined["amount_usd"] == joined["Amount"]).all()
    assert (joined["close_date"] == joined["CloseDate"]).all()
    expected_email = [
        hashlib.sha256(e.strip().lower().encode()).hexdigest() if e else None
        for e in joined["Email__c_right"]
    ]
    assert joined["Email__c"].to_list() == expected_email
    raw_emails = set(truth["Email__c"].drop_nulls())
    assert not raw_emails & set(rejected["Email__c"].drop_nulls())
    assert all(p is None or re.fullmatch(r"\+1\d{10}", p) for p in loaded["phone"])
    assert loaded["phone"].null_count() < loaded.height / 10
    assert set(loaded["amount_band"]) <= {"large", "medium"}

    # The pandera check ran over every loaded record and passed.
    check = result.get_asset_check_evaluations()[0]
    assert check.passed
    assert check.metadata["records_checked"].value == meta["records_loaded"]


def test_second_run_reads_only_newer_records_and_changes_nothing(project, instance, sf):
    first = run_flow(project, instance, FLOW)
    cursor = materialization(first, FLOW, "records")["cursor"]
    truth = live_opportunities(sf)
    assert cursor == truth["SystemModstamp"].max().isoformat().replace("+00:00", "+00:00")

    second = run_flow(project, instance, FLOW)
    meta = materialization(second, FLOW, "records")
    assert meta["records_read"] == 0
    assert meta["cursor"] == cursor
    assert meta["dagster/row_count"] == materialization(first, FLOW, "records")["dagster/row_count"]

    # A full refresh re-reads everything; upsert by key leaves no duplicates.
    third = run_flow(project, instance, FLOW, **{"flowbridge/full_refresh": "true"})
    meta = materialization(third, FLOW, "records")
    assert meta["records_read"] == truth.filter(pl.col("Amount") > 10_000).height
    loaded = Lake(project.lake_dir).scan(FLOW).collect()
    assert loaded["Id"].is_unique().all()
    assert loaded.height == meta["dagster/row_count"]


def test_cursor_stays_when_the_destination_write_fails(project, instance, sf):
    project.lake_dir.mkdir(parents=True)
    (project.lake_dir / "lake.duckdb").mkdir()  # DuckDB cannot open a folder: the write fails
    failed = run_flow(project, instance, FLOW)
    assert not failed.success
    assert stored_cursor(instance, project, FLOW) is None

    (project.lake_dir / "lake.duckdb").rmdir()
    retried = run_flow(project, instance, FLOW)
    assert retried.success
    meta = materialization(retried, FLOW, "records")
    assert meta["records_read"] == live_opportunities(sf).filter(pl.col("Amount") > 10_000).height
    assert stored_cursor(instance, project, FLOW) is not None
