"""The HubSpot sink's acceptance harness: deals upserted by external_id (a custom property with
unique values, as a HubSpot admin creates one) through batch/upsert, over an OAuth app's refresh
token so an expired access token is survived, against a HubSpot sandbox of its own.

`held` selects only the written properties: HubSpot moves hs_lastmodifieddate on every change, and
sets id, createdate and hs_object_id itself."""

from datetime import UTC, date, datetime, timedelta

import polars as pl

from flow_assets.connectors.hubspot import HubSpotConnection
from flow_assets.destinations.hubspot_sink import HubSpotIOManager
from flow_assets.sandbox.hubspot import HubSpotSandbox
from tests.acceptance.sink_harness import SinkHarness

CLIENT = {"client_id": "acceptance", "client_secret": "acceptance-secret",
          "refresh_token": "acceptance-refresh-token"}  # fmt: skip
KEY = "external_id"
FIELDS = [KEY, "dealname", "amount", "dealstage", "closedate", "contract_start_date"]
STAGES = ("appointmentscheduled", "qualifiedtobuy", "closedwon")


def io_manager(sandbox: HubSpotSandbox, error_root: str) -> HubSpotIOManager:
    connection = HubSpotConnection(base_url=sandbox.url, connection_name="acceptance", **CLIENT)
    return HubSpotIOManager(connection=connection, error_root=error_root)


def records(sandbox: HubSpotSandbox, n: int, tag: str) -> pl.DataFrame:
    start = datetime(2025, 1, 1, 9, tzinfo=UTC)
    return pl.DataFrame({
        KEY: [f"ACC-{i:05d}" for i in range(n)],
        "dealname": [f"Acceptance deal {i} {tag}" for i in range(n)],
        "amount": [float(len(tag) * 1000 + i) + 0.25 for i in range(n)],
        "dealstage": [STAGES[(i + len(tag)) % len(STAGES)] for i in range(n)],
        "closedate": [start + timedelta(hours=i, milliseconds=len(tag)) for i in range(n)],
        "contract_start_date": [date(2025, 1, 1) + timedelta(days=i % 365) for i in range(n)],
    }, schema_overrides={"closedate": pl.Datetime("us", "UTC")})  # fmt: skip


def held(sandbox: HubSpotSandbox) -> pl.DataFrame:
    live = sandbox.frame("deals").filter(~pl.col("archived"))
    return live.filter(pl.col(KEY).str.starts_with("ACC-")).select(FIELDS)


def refused(sandbox: HubSpotSandbox) -> tuple[pl.DataFrame, str]:
    bad = records(sandbox, 1, "refused").with_columns(
        pl.lit("ACC-BAD").alias(KEY), pl.lit("no-such-stage").alias("dealstage")
    )
    return bad, "VALIDATION_ERROR"


def inject(sandbox: HubSpotSandbox, fault: str, after: int) -> None:
    sandbox.inject(fault, count=1, path_contains="/batch/upsert", after=after, retry_after=0.1)


HUBSPOT_SINK = SinkHarness(
    connector="hubspot",
    sandbox=lambda: HubSpotSandbox(records=50, **CLIENT),
    io_manager=io_manager,
    settings={"connection": "acceptance", "object": "deals", "id_property": KEY},
    key=KEY,
    records=records,
    held=held,
    refused=refused,
    inject=inject,
    batch_size=100,
)
