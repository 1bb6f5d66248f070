"""`include_deleted` beyond Salesforce: each source says which field and value mark a deleted
record (HubSpot's archived deals, a Zendesk ticket's status "deleted"), the flow flags them as
_fb_deleted; a source that keeps no deleted records is refused naming the setting, at run time
and by `flowbridge validate`."""

import dagster as dg
import polars as pl
import pytest

from flow_assets.destinations.lake import Lake
from flow_assets.sandbox.hubspot import HubSpotSandbox
from flow_assets.sandbox.servicenow import ServiceNowSandbox
from flow_assets.sandbox.zendesk import ZendeskSandbox
from flow_assets.validate import validate_project
from tests.conftest import copy_project, failure_message, materialization, run_flow
from tests.flows.test_example_flows import makefile_exports

SANDBOXES = {
    "HUBSPOT_SANDBOX_URL": lambda: HubSpotSandbox(records=120),
    "ZENDESK_SANDBOX_URL": lambda: ZendeskSandbox(records=120),
    "SERVICENOW_SANDBOX_URL": lambda: ServiceNowSandbox(records=60),
}


@pytest.fixture(scope="module")
def sandboxes():
    started = {var: build().start() for var, build in SANDBOXES.items()}
    yield started
    for sandbox in started.values():
        sandbox.stop()


@pytest.fixture
def project(tmp_path, sandboxes, monkeypatch):
    for name, value in makefile_exports().items():
        monkeypatch.setenv(name, value)
    for var, sandbox in sandboxes.items():
        monkeypatch.setenv(var, sandbox.url)
    return copy_project(tmp_path)


def with_deleted(project, flow: str) -> None:
    path = project.flows_dir / f"{flow}.yaml"
    path.write_text(
        path.read_text().replace("destination:", "  include_deleted: true\ndestination:", 1)
    )


def loaded(project, flow: str, truth: pl.DataFrame, key: str, deleted: pl.Expr) -> None:
    with dg.instance_for_test() as instance:
        result = run_flow(project, instance, flow)
        assert result.success, failure_message(result)
        meta = materialization(result, flow, "records")
    lake = Lake(project.lake_dir).scan(flow).collect()
    expected = truth.select(key, deleted.alias("_fb_deleted")).sort(key)
    assert lake.height == meta["records_loaded"] == truth.height
    assert lake.select(key, "_fb_deleted").sort(key).equals(expected)
    assert 0 < expected["_fb_deleted"].sum() < truth.height  # some deleted, some not


def test_hubspot_archived_deals_are_read_and_flagged(project, sandboxes):
    with_deleted(project, "hubspot_deals_to_lake")
    truth = sandboxes["HUBSPOT_SANDBOX_URL"].frame("deals")
    loaded(project, "hubspot_deals_to_lake", truth, "id", pl.col("archived"))


def test_zendesk_deleted_tickets_are_read_and_flagged(project, sandboxes):
    with_deleted(project, "zendesk_tickets_to_lake")
    truth = sandboxes["ZENDESK_SANDBOX_URL"].frame("tickets")
    loaded(project, "zendesk_tickets_to_lake", truth, "id", pl.col("status") == "deleted")


def test_a_source_without_deleted_records_is_refused_naming_the_setting(project):
    with_deleted(project, "servicenow_incidents_to_lake")
    with dg.instance_for_test() as instance:
        result = run_flow(project, instance, "servicenow_incidents_to_lake")
    assert not result.success
    message = "source.include_deleted: incident keeps no deleted records to read"
    assert message in failure_message(result)
    for other in project.flows_dir.glob("*.yaml"):  # validate this flow (and no other source)
        if other.stem not in ("connections", "servicenow_incidents_to_lake"):
            other.unlink()
    problems = [str(p) for p in validate_project(project.flows_dir).problems]
    assert any("servicenow_incidents_to_lake.yaml" in p and message in p for p in problems), (
        problems
    )
