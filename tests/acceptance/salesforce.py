"""The Salesforce connector's acceptance harness."""

import polars as pl

from flow_assets.connectors.salesforce import SalesforceConnection
from flow_assets.sandbox import SalesforceSandbox
from tests.acceptance.harness import Harness

CLIENT = {"client_id": "acceptance", "client_secret": "acceptance-secret"}


def connection(sandbox: SalesforceSandbox, valid: bool) -> SalesforceConnection:
    secret = CLIENT["client_secret"] if valid else "wrong-secret"
    return SalesforceConnection(login_url=sandbox.url, client_id=CLIENT["client_id"],
                                client_secret=secret, connection_name="acceptance")  # fmt: skip


def truth(sandbox: SalesforceSandbox) -> pl.DataFrame:
    frame = sandbox.frame("Opportunity").filter(~pl.col("IsDeleted"))
    return frame.with_columns(pl.col(pl.Datetime).dt.cast_time_unit("us"))


def inject(sandbox: SalesforceSandbox, fault: str, after: int) -> None:
    sandbox.inject(fault, count=1, path_contains="/query", after=after, retry_after=0.1)


SALESFORCE = Harness(
    connector="salesforce",
    sandbox=lambda: SalesforceSandbox(records=600, **CLIENT),
    connection=connection,
    object="Opportunity",
    cursor_field="SystemModstamp",
    key="Id",
    truth=truth,
    inject=inject,
    page_size=200,
)
