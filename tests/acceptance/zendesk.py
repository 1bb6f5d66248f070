"""The Zendesk connector's acceptance harness.

It connects as an OAuth client (the client credentials grant), so the "expire_token" fault is
what Zendesk does when an access token passes its expires_in: a 401 on the next call, which the
client survives by asking /oauth/tokens for a new token. (An API token does not expire; a 401
on one is final, see tests/connectors/test_zendesk.py.)
"""

import polars as pl

from flow_assets.connectors.zendesk import ZendeskConnection
from flow_assets.sandbox.zendesk import ZendeskSandbox
from tests.acceptance.harness import Harness

CLIENT = {"client_id": "acceptance", "client_secret": "acceptance-secret"}


def connection(sandbox: ZendeskSandbox, valid: bool) -> ZendeskConnection:
    secret = CLIENT["client_secret"] if valid else "wrong-secret"
    return ZendeskConnection(base_url=sandbox.url, client_id=CLIENT["client_id"],
                             client_secret=secret, connection_name="acceptance")  # fmt: skip


def truth(sandbox: ZendeskSandbox) -> pl.DataFrame:
    return sandbox.frame("tickets").filter(pl.col("status") != "deleted")


def inject(sandbox: ZendeskSandbox, fault: str, after: int) -> None:
    sandbox.inject(fault, count=1, path_contains="/incremental/", after=after, retry_after=0.1)


ZENDESK = Harness(
    connector="zendesk",
    sandbox=lambda: ZendeskSandbox(records=600, **CLIENT),
    connection=connection,
    object="tickets",
    cursor_field="updated_at",
    key="id",
    truth=truth,
    inject=inject,
    page_size=100,
)
