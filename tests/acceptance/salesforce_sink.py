"""The Salesforce sink's acceptance harness: upsert by external id on Opportunity through sObject
Collections, against a Salesforce sandbox of its own."""

from datetime import date, timedelta

import polars as pl

from flow_assets.connectors.salesforce import SalesforceConnection
from flow_assets.destinations.salesforce_sink import SalesforceIOManager
from flow_assets.sandbox import SalesforceSandbox
from tests.acceptance.sink_harness import SinkHarness

CLIENT = {"client_id": "acceptance", "client_secret": "acceptance-secret"}
EXT = "External_Id__c"
FIELDS = [EXT, "Name", "Amount", "StageName", "CloseDate"]


def io_manager(sandbox: SalesforceSandbox, error_root: str) -> SalesforceIOManager:
    connection = SalesforceConnection(login_url=sandbox.url, **CLIENT)
    return SalesforceIOManager(connection=connection, error_root=error_root)


def records(sandbox: SalesforceSandbox, n: int, tag: str) -> pl.DataFrame:
    return pl.DataFrame({
        EXT: [f"ACC-{i:05d}" for i in range(n)],
        "Name": [f"Acceptance deal {i} {tag}" for i in range(n)],
        "Amount": [float(len(tag) * 1000 + i) + 0.25 for i in range(n)],
        "StageName": ["Prospecting" if i % 2 else "Closed Won" for i in range(n)],
        "CloseDate": [date(2025, 1, 1) + timedelta(days=i % 365) for i in range(n)],
    }, schema_overrides={"CloseDate": pl.Date})  # fmt: skip


def held(sandbox: SalesforceSandbox) -> pl.DataFrame:
    live = sandbox.frame("Opportunity").filter(~pl.col("IsDeleted"))
    return live.filter(pl.col(EXT).str.starts_with("ACC-")).select(FIELDS)


def refused(sandbox: SalesforceSandbox) -> tuple[pl.DataFrame, str]:
    bad = records(sandbox, 1, "refused").with_columns(
        pl.lit("ACC-BAD").alias(EXT), pl.lit(None, pl.String).alias("Name")
    )
    return bad, "REQUIRED_FIELD_MISSING"


def inject(sandbox: SalesforceSandbox, fault: str, after: int) -> None:
    sandbox.inject(fault, count=1, path_contains="/composite/sobjects", after=after,
                   retry_after=0.1)  # fmt: skip


SALESFORCE_SINK = SinkHarness(
    connector="salesforce",
    sandbox=lambda: SalesforceSandbox(records=50, **CLIENT),
    io_manager=io_manager,
    settings={"connection": "acceptance", "object": "Opportunity", "external_id_field": EXT},
    key=EXT,
    records=records,
    held=held,
    refused=refused,
    inject=inject,
    faults_pending=lambda sandbox: len(sandbox.pending_faults()),
    batch_size=200,
)
