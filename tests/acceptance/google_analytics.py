"""The Google Analytics 4 connector's acceptance harness.

GA4 has no records, only reports: the object is `report` over the dimensions and metrics
read here, so the key is the dimensions, the cursor is `date` (a Date) and the truth is the
sandbox's own aggregate at that grain. The connection is an OAuth client with a refresh token,
so "expire_token" is an access token past its expires_in: a 401 (UNAUTHENTICATED), survived by
exchanging the refresh token again. (Service account keys: tests/connectors.)
"""

import polars as pl

from flow_assets.connectors.google_analytics import GoogleAnalyticsConnection
from flow_assets.sandbox.google_analytics import GoogleAnalyticsSandbox
from tests.acceptance.harness import Harness

CLIENT = {"client_id": "acceptance", "client_secret": "acceptance-secret"}
DIMENSIONS = ("date", "country", "sessionSource", "deviceCategory")
METRICS = ("activeUsers", "sessions", "engagementRate", "averageSessionDuration", "totalRevenue")


def connection(sandbox: GoogleAnalyticsSandbox, valid: bool) -> GoogleAnalyticsConnection:
    secret = CLIENT["client_secret"] if valid else "wrong-secret"
    return GoogleAnalyticsConnection(
        property_id=sandbox.property_id, base_url=sandbox.url, token_url=f"{sandbox.url}/token",
        client_id=CLIENT["client_id"], client_secret=secret,
        refresh_token=sandbox.refresh_token, connection_name="acceptance",
    )  # fmt: skip


def truth(sandbox: GoogleAnalyticsSandbox) -> pl.DataFrame:
    return sandbox.frame(list(DIMENSIONS), list(METRICS))


def inject(sandbox: GoogleAnalyticsSandbox, fault: str, after: int) -> None:
    sandbox.inject(fault, count=1, path_contains=":runReport", after=after, retry_after=0.1)


GOOGLE_ANALYTICS = Harness(
    connector="google_analytics",
    sandbox=lambda: GoogleAnalyticsSandbox(**CLIENT),
    connection=connection,
    object="report",
    cursor_field="date",
    key=DIMENSIONS,
    truth=truth,
    inject=inject,
    page_size=500,
    fields=DIMENSIONS + METRICS,
)
