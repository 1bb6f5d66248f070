"""The Slack connector's acceptance harness.

It connects with token rotation (client_id, client_secret, refresh_token, and a token_store
keeping each new single-use refresh token), so the "expire_token" fault is what Slack does when
a rotating access token passes its 12 hours: an HTTP 200 `{"ok": false, "error":
"token_expired"}`, survived by exchanging the refresh token on oauth.v2.access. (A plain xoxb-
bot token does not expire; a refusal of one is final, see tests/connectors/test_slack.py.)
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from flow_assets.connectors.slack import SlackConnection
from flow_assets.sandbox.slack import SlackSandbox
from tests.acceptance.harness import Harness

APP = {"client_id": "4242.4343", "client_secret": "acceptance-secret"}
REFRESH = "xoxe-1-acceptance-refresh"


@contextmanager
def sandbox() -> Iterator[SlackSandbox]:
    with (
        tempfile.TemporaryDirectory() as store,
        SlackSandbox(messages=500, refresh_token=REFRESH, **APP) as server,
    ):
        server.token_store = str(Path(store) / "slack-tokens.json")  # type: ignore[attr-defined]
        yield server


def connection(server: SlackSandbox, valid: bool) -> SlackConnection:
    secret = APP["client_secret"] if valid else "wrong-secret"
    return SlackConnection(base_url=server.url + "/api", client_id=APP["client_id"],
                           client_secret=secret, refresh_token=REFRESH,
                           token_store=server.token_store,  # type: ignore[attr-defined]
                           channel_types="public_channel,private_channel",
                           connection_name="acceptance")  # fmt: skip


def truth(server: SlackSandbox) -> pl.DataFrame:
    # Messages of the channels the bot is a member of (the only ones a bot token can read;
    # the connection lists private channels too).
    return server.frame("messages").filter(pl.col("channel").is_in(server.member_channels()))


def inject(server: SlackSandbox, fault: str, after: int) -> None:
    server.inject(fault, count=1, path_contains="conversations.history", after=after,
                  retry_after=0.1)  # fmt: skip


SLACK = Harness(
    connector="slack",
    sandbox=sandbox,
    connection=connection,
    object="messages",
    cursor_field="posted_at",
    key="ts",
    truth=truth,
    inject=inject,
    page_size=50,
)
