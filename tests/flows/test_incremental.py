"""AppFlow's incremental pull: a lookback window re-read without duplicates, the first run's
30 days (or start: all), and deleted records arriving flagged through queryAll."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from flow_assets import pull
from flow_assets.destinations.lake import Lake
from flow_assets.sandbox import SalesforceSandbox
from tests.conftest import CLIENT_ID, CLIENT_SECRET, failure_message, materialization, run_flow

FLOW = "salesforce_opportunities_by_day"  # start: all, lookback: 2 hours, include_deleted


def unpartitioned(project, *edits: tuple[str, str]) -> None:
    """The example flow without its partitions (a run pulls from the cursor), edited."""
    path = project.flows_dir / f"{FLOW}.yaml"
    text = "".join(line for line in path.read_text().splitlines(True) if "partitions:" not in line)
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)


def run(project, instance, **tags: str) -> dict:
    result = run_flow(project, instance, FLOW, **tags)
    assert result.success, failure_message(result)
    return materialization(result, FLOW, "records")


def test_lookback_rereads_its_window_without_duplicates(project, instance, sf):
    unpartitioned(project, ("lookback: 2 hours", "lookback: 1 day"))
    truth = sf.frame("Opportunity")
    first = run(project, instance)
    assert first["records_read"] == truth.height  # start: all
    mark = datetime.fromisoformat(first["cursor"])

    second = run(project, instance)
    window = truth.filter(pl.col("SystemModstamp") > mark - timedelta(days=1))
    assert second["records_read"] == window.height > 0  # the last day again, for late records
    assert second["cursor"] == first["cursor"]
    table = Lake(project.lake_dir).scan(FLOW).collect()
    assert table.height == truth.height and table["Id"].is_unique().all()


def test_first_run_without_start_pulls_the_last_30_days(project, instance, sf, monkeypatch):
    unpartitioned(project, ("start: all, ", ""))
    now = datetime(2025, 12, 31, 12, tzinfo=UTC)  # the sandbox's records end on 2025-12-31
    monkeypatch.setattr(pull, "now", lambda: now)
    truth = sf.frame("Opportunity")
    recent = truth.filter(pl.col("SystemModstamp") > now - timedelta(days=30))
    result = run_flow(project, instance, FLOW)
    assert materialization(result, FLOW, "records")["records_read"] == recent.height > 0
    extracted = materialization(result, FLOW, "extracted")
    assert extracted["cursor_window"] == "after 2025-12-01T12:00:00+00:00"

    # A full refresh is AppFlow's Complete mode: everything, not the first run's 30 days.
    full = run(project, instance, **{"flowbridge/full_refresh": "true"})
    assert full["records_read"] == truth.height


@pytest.fixture
def own_sandbox(monkeypatch):
    """A sandbox of this test's own: deleting records changes it."""
    with SalesforceSandbox(records=300, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sb:
        monkeypatch.setenv("SALESFORCE_SANDBOX_URL", sb.url)
        yield sb


def test_deleted_records_arrive_flagged(project, instance, own_sandbox):
    unpartitioned(project)
    gone = own_sandbox.change_records("Opportunity", count=0, delete=5, seed=3).deleted
    own_sandbox.reset_stats()
    first = run(project, instance)
    assert first["records_read"] == 300
    assert own_sandbox.stats()["query_all"] == 1 and own_sandbox.stats()["query"] == 0
    table = Lake(project.lake_dir).scan(FLOW).collect()
    assert table.height == 300
    assert sorted(table.filter(pl.col("_fb_deleted"))["Id"]) == gone
    assert "IsDeleted" not in table.columns  # the flow does not list it: only the flag

    # Deleted later: the delete moves SystemModstamp, so the next run flags them in place.
    later = own_sandbox.change_records("Opportunity", count=0, delete=2, seed=4).deleted
    run(project, instance)
    table = Lake(project.lake_dir).scan(FLOW).collect()
    assert table.height == 300 and table["Id"].is_unique().all()
    assert sorted(table.filter(pl.col("_fb_deleted"))["Id"]) == sorted(gone + later)
