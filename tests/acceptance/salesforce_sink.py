"""The Salesforce sink's acceptance harnesses: upsert by external id on Opportunity through sObject
Collections, and through Bulk API 2.0 ingest jobs, each against a Salesforce sandbox of its own."""

from datetime import date, timedelta
from functools import partial

import polars as pl

from flow_assets.connectors.salesforce import SalesforceConnection
from flow_assets.destinations.salesforce_sink import SalesforceIOManager
from flow_assets.sandbox import SalesforceSandbox
from tests.acceptance.sink_harness import SinkHarness

CLIENT = {"client_id": "acceptance", "client_secret": "acceptance-secret"}
EXT = "External_Id__c"
FIELDS = [EXT, "Name", "Amount", "StageName", "CloseDate"]
SETTINGS = {"connection": "acceptance", "object": "Opportunity", "external_id_field": EXT}


def io_manager(sandbox: SalesforceSandbox, error_root: str, **bulk: int) -> SalesforceIOManager:
    connection = SalesforceConnection(login_url=sandbox.url, **CLIENT)
    return SalesforceIOManager(connection=connection, error_root=error_root, **bulk)


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
    settings={**SETTINGS, "api": "rest"},
    key=EXT,
    records=records,
    held=held,
    refused=refused,
    inject=inject,
    batch_size=200,
)


def inject_bulk(sandbox: SalesforceSandbox, fault: str, after: int) -> None:
    # After a job's creation: the fault meets its upload (a 503 there sends the records to a
    # new job), or whichever ingest call comes next.
    sandbox.inject(fault, count=1, path_contains="/jobs/ingest", after=after, retry_after=0.1)


BULK_BATCH = 150  # records a job: small, so the suite's runs take several jobs

SALESFORCE_BULK_SINK = SinkHarness(
    connector="salesforce",
    name="salesforce_bulk",
    sandbox=lambda: SalesforceSandbox(records=50, **CLIENT),
    io_manager=partial(io_manager, bulk_batch_size=BULK_BATCH),
    settings={**SETTINGS, "api": "bulk"},
    key=EXT,
    records=records,
    held=held,
    refused=refused,
    inject=inject_bulk,
    batch_size=BULK_BATCH,
)
