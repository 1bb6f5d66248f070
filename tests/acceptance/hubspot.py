"""The HubSpot connector's acceptance harness: OAuth refresh-token flow, so an expired access
token is survived by refreshing it."""

import polars as pl

from flow_assets.connectors.hubspot import HubSpotConnection
from flow_assets.sandbox.hubspot import HubSpotSandbox
from tests.acceptance.harness import Harness

CLIENT = {
    "client_id": "acceptance",
    "client_secret": "acceptance-secret",
    "refresh_token": "acceptance-refresh-token",
}


def connection(sandbox: HubSpotSandbox, valid: bool) -> HubSpotConnection:
    secret = CLIENT["client_secret"] if valid else "wrong-secret"
    return HubSpotConnection(base_url=sandbox.url, client_id=CLIENT["client_id"],
                             client_secret=secret, refresh_token=CLIENT["refresh_token"],
                             connection_name="acceptance")  # fmt: skip


def truth(sandbox: HubSpotSandbox) -> pl.DataFrame:
    return sandbox.frame("deals").filter(~pl.col("archived"))


def inject(sandbox: HubSpotSandbox, fault: str, after: int) -> None:
    sandbox.inject(fault, count=1, path_contains="/crm/v3/objects/deals", after=after,
                   retry_after=0.1)  # fmt: skip


HUBSPOT = Harness(
    connector="hubspot",
    sandbox=lambda: HubSpotSandbox(records=600, **CLIENT),
    connection=connection,
    object="deals",
    cursor_field="hs_lastmodifieddate",
    key="id",
    truth=truth,
    inject=inject,
    page_size=100,
)
