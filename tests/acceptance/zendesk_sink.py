"""The Zendesk sink's acceptance harness: tickets upserted by external_id through List Tickets'
external_id filter, update_many and create_many jobs, against a Zendesk sandbox of its own.

Two choices the checks rest on, both Zendesk's rules rather than the suite's:
- `description` is the ticket's first comment: written on create, read-only afterwards. So the
  records' description depends on the record's place only, not on the tag: an edit changes
  subject, priority, status, type and tags, which Zendesk does update.
- The faults are met where Zendesk cannot have acted on the request, or where a request may be
  repeated: 429 and expire_token on create_many itself, 503 on the job's status (a 5xx on
  create_many is not repeated, since the job may have been queued: tests/destinations/
  test_zendesk_sink.py shows the run stopping then, with nothing created twice).
"""

import re

import polars as pl

from flow_assets.connectors.zendesk import ZendeskConnection
from flow_assets.destinations.zendesk_sink import ZendeskIOManager
from flow_assets.sandbox.zendesk import ZendeskSandbox
from tests.acceptance.sink_harness import SinkHarness

CLIENT = {"client_id": "acceptance", "client_secret": "acceptance-secret"}
KEY = "external_id"
FIELDS = [KEY, "subject", "description", "priority", "status", "type", "tags"]
PRIORITIES, STATUSES = ("low", "normal", "high", "urgent"), ("open", "pending", "hold", "solved")
TYPES = ("question", "incident", "problem", "task")


def io_manager(sandbox: ZendeskSandbox, error_root: str) -> ZendeskIOManager:
    connection = ZendeskConnection(base_url=sandbox.url, connection_name="acceptance", **CLIENT)
    return ZendeskIOManager(connection=connection, error_root=error_root)


def records(sandbox: ZendeskSandbox, n: int, tag: str) -> pl.DataFrame:
    shift = len(tag)
    return pl.DataFrame({
        KEY: [f"ACC-{i:05d}" for i in range(n)],
        "subject": [f"Acceptance ticket {i} {tag}" for i in range(n)],
        "description": [f"Opened by the acceptance suite ({i})" for i in range(n)],
        "priority": [PRIORITIES[(i + shift) % 4] for i in range(n)],
        "status": [STATUSES[(i + shift) % 4] for i in range(n)],
        "type": [TYPES[(i + shift) % 4] for i in range(n)],
        "tags": [["acceptance", re.sub(r"\W", "_", tag)] for _ in range(n)],
    }, schema_overrides={"tags": pl.List(pl.String)})  # fmt: skip


def held(sandbox: ZendeskSandbox) -> pl.DataFrame:
    tickets = sandbox.frame("tickets").filter(pl.col("status") != "deleted")
    return tickets.filter(pl.col(KEY).str.starts_with("ACC-")).select(FIELDS)


def refused(sandbox: ZendeskSandbox) -> tuple[pl.DataFrame, str]:
    bad = records(sandbox, 1, "refused").with_columns(
        pl.lit("ACC-BAD").alias(KEY), pl.lit(None, pl.String).alias("description")
    )
    return bad, "TicketCreateFailed"  # a ticket needs its first comment


def inject(sandbox: ZendeskSandbox, fault: str, after: int) -> None:
    where = "/job_statuses/" if fault == "503" else "/tickets/create_many"
    sandbox.inject(fault, count=1, path_contains=where, after=after, retry_after=0.1)


ZENDESK_SINK = SinkHarness(
    connector="zendesk",
    sandbox=lambda: ZendeskSandbox(records=50, **CLIENT),
    io_manager=io_manager,
    settings={"connection": "acceptance", "object": "tickets"},
    key=KEY,
    records=records,
    held=held,
    refused=refused,
    inject=inject,
    batch_size=100,
)
