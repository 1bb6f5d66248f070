"""Shared fixtures: a real sandbox server on 127.0.0.1, a throwaway project and Dagster instance."""

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from flow_assets.definitions import build_definitions
from flow_assets.environment import Settings
from flow_assets.runner import QUIET, failure_messages
from flow_assets.sandbox import SalesforceSandbox

REPO = Path(__file__).resolve().parent.parent
CLIENT_ID, CLIENT_SECRET = "flowbridge-tests", "tests-secret"
SANDBOX_RECORDS = 3000


@pytest.fixture(scope="session")
def sandbox():
    with SalesforceSandbox(
        records=SANDBOX_RECORDS, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as sb:
        yield sb


@pytest.fixture
def sf(sandbox, monkeypatch):
    """The sandbox, with faults cleared and the connection's variables pointing at it."""
    sandbox.reset_faults()
    sandbox.reset_stats()
    monkeypatch.setenv("SALESFORCE_SANDBOX_URL", sandbox.url)
    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", CLIENT_SECRET)
    yield sandbox
    sandbox.reset_faults()


@pytest.fixture
def project(tmp_path, sf) -> Settings:
    """A copy of the repository's flow_defs, with its own data folder."""
    flows = tmp_path / "flow_defs"
    shutil.copytree(REPO / "flow_defs", flows)
    return Settings(environment="LOCAL", flows_dir=flows, data_dir=tmp_path / "data")


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def run_flow(settings: Settings, instance: dg.DagsterInstance, flow: str, **tags: str):
    defs = build_definitions(settings)
    return defs.resolve_job_def(f"{flow}_job").execute_in_process(
        instance=instance, raise_on_error=False, tags=tags, run_config=QUIET
    )


def materialization(result, flow: str, name: str) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key == dg.AssetKey([flow, name]):
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {flow}/{name}")


def failure_message(result) -> str:
    return "\n".join(failure_messages(result))


def live_opportunities(sandbox) -> "pl.DataFrame":
    """The sandbox's truth as a SOQL query sees it: deleted records only show in queryAll."""
    return sandbox.frame("Opportunity").filter(~pl.col("IsDeleted"))
