"""Reading a window of the cursor field ([start, end), pushed down as two bounds) and deleted
records through queryAll, against a sandbox of our own (deleting records changes it)."""

import dagster as dg
import polars as pl
import pytest

from flow_assets.connectors.base import ReadRequest
from flow_assets.connectors.salesforce import SalesforceConnection
from flow_assets.connectors.salesforce_soql import build_soql
from flow_assets.sandbox import SalesforceSandbox
from tests.conftest import CLIENT_ID, CLIENT_SECRET


@pytest.fixture(scope="module")
def sandbox():
    with SalesforceSandbox(records=500, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sb:
        yield sb


@pytest.fixture
def client(sandbox):
    resource = SalesforceConnection(
        login_url=sandbox.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    with dg.build_resources({"sf": resource}) as resources:
        yield resources.sf.open()


def ids(pages) -> list[str]:
    return sorted(pl.concat(list(pages))["Id"])


def test_a_window_includes_its_start_and_excludes_its_end(client, sandbox):
    truth = sandbox.frame("Opportunity").filter(~pl.col("IsDeleted"))
    stamps = truth["SystemModstamp"].sort()
    start, end = stamps[100], stamps[140]  # records sit exactly on both bounds
    request = ReadRequest(
        object="Opportunity", fields=["Id", "SystemModstamp"], cursor_field="SystemModstamp",
        cursor_from=start, cursor_before=end,
    )  # fmt: skip
    soql = build_soql(request, client.describe("Opportunity"))
    assert "WHERE SystemModstamp >= " in soql and " AND SystemModstamp < " in soql
    expected = truth.filter(pl.col("SystemModstamp").is_between(start, end, closed="left"))
    assert ids(client.read(request)) == sorted(expected["Id"])
    assert expected.height == 40


def test_deleted_records_come_only_through_query_all(client, sandbox):
    change = sandbox.change_records("Opportunity", count=0, delete=3, seed=11)
    fields = ["Id", "IsDeleted"]
    live = ids(client.read(ReadRequest(object="Opportunity", fields=fields)))
    assert not set(change.deleted) & set(live)
    sandbox.reset_stats()
    every = pl.concat(
        list(client.read(ReadRequest(object="Opportunity", fields=fields, include_deleted=True)))
    )
    assert sandbox.stats()["query_all"] == 1
    assert sorted(every["Id"]) == sorted(sandbox.frame("Opportunity")["Id"])
    assert sorted(every.filter(pl.col("IsDeleted"))["Id"]) == change.deleted
