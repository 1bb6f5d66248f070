"""`{event: source_changes}` on a source without a change probe of its own (Zendesk here): the
sensor reads the cursor field alone past the newest change it saw, requests one run when
records changed, and that run delivers exactly them."""

import dagster as dg
import polars as pl
import pytest
import requests

from flow_assets.definitions import build_definitions
from flow_assets.destinations.lake import Lake
from flow_assets.runner import QUIET
from flow_assets.sandbox.zendesk import ZendeskSandbox
from tests.conftest import copy_project, sensor_tick
from tests.flows.test_example_flows import makefile_exports

FLOW = "zendesk_tickets_to_lake"
SENSOR = f"{FLOW}_source_changes"


@pytest.fixture
def sandbox():
    with ZendeskSandbox(records=150) as server:
        yield server


@pytest.fixture
def project(tmp_path, sandbox, monkeypatch):
    for name, value in makefile_exports().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ZENDESK_SANDBOX_URL", sandbox.url)
    settings = copy_project(tmp_path)
    path = settings.flows_dir / f"{FLOW}.yaml"
    text = path.read_text().replace("trigger: on_demand", "trigger: {event: source_changes}")
    path.write_text(text)
    return settings


def tick(settings, instance, cursor=None):
    return sensor_tick(build_definitions(settings), SENSOR, instance, cursor)


def run(settings, instance, request=None):
    job = build_definitions(settings).resolve_job_def(f"{FLOW}_job")
    tags = {**request.tags, "dagster/sensor_name": SENSOR} if request else {}
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags=tags,
                                    run_config=QUIET)  # fmt: skip
    assert result.success
    return result


def change(sandbox, ids: list[int]) -> None:
    """Zendesk's own way: update_many, then its job runs (the sandbox completes it on polls)."""
    headers = {"Authorization": f"Bearer {sandbox.issue_access_token()}"}
    body = {"tickets": [{"id": i, "priority": "urgent"} for i in ids]}
    url = sandbox.url + "/api/v2/tickets/update_many.json"
    job = requests.put(url, json=body, headers=headers, timeout=30).json()["job_status"]
    for _ in range(10):
        status = requests.get(f"{sandbox.url}/api/v2/job_statuses/{job['id']}.json",
                              headers=headers, timeout=30).json()["job_status"]  # fmt: skip
        if status["status"] == "completed":
            return
    raise AssertionError(status)


def test_changes_are_seen_without_a_change_probe_and_run_once(project, sandbox):
    with dg.instance_for_test() as instance:
        first = tick(project, instance)  # nothing seen, nothing run: any record is a change
        assert len(first.run_requests) == 1
        run(project, instance, first.run_requests[0])
        quiet = tick(project, instance, first.cursor)
        assert quiet.run_requests == [] and "no change to tickets" in quiet.skip_message

        live = sandbox.frame("tickets").filter(pl.col("status") != "deleted")
        ids = live.filter(pl.col("priority") != "urgent")["id"].head(3).to_list()
        now = sandbox.now
        sandbox.now = lambda: now() + 120  # the export leaves out the last minute
        change(sandbox, ids)
        sandbox.now = lambda: now() + 240
        changed = tick(project, instance, quiet.cursor)
        assert len(changed.run_requests) == 1
        run(project, instance, changed.run_requests[0])
        lake = Lake(project.lake_dir).scan(FLOW).collect()
        assert lake.filter(pl.col("id").is_in(ids))["priority"].to_list() == ["urgent"] * 3
        assert lake.height == live.height
        assert tick(project, instance, changed.cursor).run_requests == []
