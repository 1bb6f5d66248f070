"""Transient faults mid-read are survived with exact counts; permanent ones fail clearly."""

import dagster as dg
import polars as pl
import pytest

from flow_assets.destinations.lake import Lake
from tests.conftest import failure_message, live_opportunities, materialization, run_flow

FLOW = "all_opportunities"
FLOW_FILE = """\
source:
  connection: salesforce_sandbox
  object: Opportunity
  fields: [Id, Amount, CloseDate, SystemModstamp]
  page_size: 200
destination: {write: append}
"""


@pytest.fixture
def paged(project):
    (project.flows_dir / f"{FLOW}.yaml").write_text(FLOW_FILE)
    return project


def assert_exact(paged, result, sf):
    assert result.success, failure_message(result)
    meta = materialization(result, FLOW, "records")
    truth = live_opportunities(sf)
    assert meta["records_read"] == meta["records_loaded"] == truth.height
    loaded = Lake(paged.lake_dir).scan(FLOW).collect()
    assert loaded.height == truth.height
    assert loaded["Id"].is_unique().all()
    assert sorted(loaded["Id"]) == sorted(truth["Id"])
    return materialization(result, FLOW, "extracted")


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("429", {"retry_after": 1}),
        ("503", {}),
        ("reset", {}),
        ("expire_token", {}),
        ("malformed", {}),
    ],
)
def test_fault_mid_paging_is_survived_with_exact_counts(paged, instance, sf, kind, options):
    sf.inject(kind, count=2, path_contains="/query/", after=3, **options)
    extracted = assert_exact(paged, run_flow(paged, instance, FLOW), sf)
    assert sf.stats()["faults"][kind] == 2
    if kind == "expire_token":
        assert extracted["reauthentications"] >= 1
    else:
        assert extracted["retries"] == 2


def test_retry_after_is_honoured(paged, instance, sf):
    import time

    sf.inject("429", count=1, path_contains="/query", retry_after=2)
    started = time.monotonic()
    assert_exact(paged, run_flow(paged, instance, FLOW), sf)
    assert time.monotonic() - started >= 2


def test_api_limit_fails_clearly_without_retrying(paged, instance, sf):
    sf.inject("limit_exceeded", count=1, path_contains="/query")
    result = run_flow(paged, instance, FLOW)
    assert not result.success
    message = failure_message(result)
    assert "Salesforce's API request limit is used up" in message
    assert sf.stats()["faults"]["limit_exceeded"] == 1


def test_persistently_malformed_answer_names_the_page(paged, instance, sf):
    connections = paged.flows_dir / "connections.yaml"
    connections.write_text(connections.read_text() + "  max_attempts: 3\n")
    sf.inject("malformed", count=50, path_contains="/query/", after=1)
    result = run_flow(paged, instance, FLOW)
    assert not result.success
    assert "page 3 of Opportunity is not valid JSON" in failure_message(result)
    # Nothing half-written is visible: the lake has no table for the flow.
    assert FLOW not in Lake(paged.lake_dir).tables()


def test_wrong_credentials_fail_with_the_vendor_error(paged, instance, sf, monkeypatch):
    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", "wrong-secret")
    result = run_flow(paged, instance, FLOW)
    assert not result.success
    message = failure_message(result)
    assert "connection 'salesforce_sandbox': authentication failed" in message
    assert "invalid_client" in message
    assert "wrong-secret" not in message


def test_missing_secret_variable_is_named(paged, instance, sf, monkeypatch):
    monkeypatch.delenv("SALESFORCE_SANDBOX_CLIENT_SECRET")
    with pytest.raises(dg.DagsterInvalidConfigError, match="SALESFORCE_SANDBOX_CLIENT_SECRET"):
        run_flow(paged, instance, FLOW)


def test_refresh_token_flow_renews_the_session(paged, instance, sf):
    (paged.flows_dir / "connections.yaml").write_text(
        (paged.flows_dir / "connections.yaml").read_text()
        + "\nsalesforce_refresh:\n  connector: salesforce\n  login_url: ${SALESFORCE_SANDBOX_URL}\n"
        "  auth_flow: refresh_token\n  client_id: ${SALESFORCE_SANDBOX_CLIENT_ID}\n"
        "  client_secret: ${SALESFORCE_SANDBOX_CLIENT_SECRET}\n  refresh_token: ${SF_REFRESH}\n"
    )
    (paged.flows_dir / f"{FLOW}.yaml").write_text(
        FLOW_FILE.replace("salesforce_sandbox", "salesforce_refresh")
    )
    import os

    os.environ["SF_REFRESH"] = sf.issue_refresh_token()
    try:
        sf.inject("expire_token", count=1, path_contains="/query/", after=2)
        extracted = assert_exact(paged, run_flow(paged, instance, FLOW), sf)
        assert extracted["reauthentications"] == 1
        assert sf.stats()["token"] >= 2
    finally:
        del os.environ["SF_REFRESH"]


def test_pushdown_and_local_filter_agree(project, instance, sf):
    (project.flows_dir / "contains.yaml").write_text(
        FLOW_FILE.replace("fields: [Id,", "fields: [Name, StageName, Id,")
        + "tasks:\n  - filter: {field: StageName, operator: in, value: [Closed Won, Prospecting]}\n"
        "  - filter: {field: Name, operator: contains, value: Inc}\n"
    )
    result = run_flow(project, instance, "contains")
    assert result.success, failure_message(result)
    meta = materialization(result, "contains", "records")
    truth = live_opportunities(sf).filter(pl.col("StageName").is_in(["Closed Won", "Prospecting"]))
    assert meta["records_read"] == truth.height  # the IN filter ran in SOQL
    assert (
        meta["records_loaded"]
        == truth.filter(pl.col("Name").str.contains("Inc", literal=True)).height
    )
    assert materialization(result, "contains", "extracted")["filters_pushed_down"] == 1
