"""The Slack connector's specifics against its sandbox: ts <-> datetime to the microsecond,
ok:false answers, cursor paging and has_more, 429 + Retry-After, token rotation with its
single-use refresh tokens, and slack_sdk (Slack's own client) pointed at the sandbox to show
the sandbox speaks Slack."""

import json
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.connectors import CONNECTION_TYPES, SOURCE_CONNECTORS
from flow_assets.connectors.base import ReadRequest
from flow_assets.connectors.errors import (
    AuthError,
    ConnectorError,
    MalformedResponse,
    UnknownObject,
)
from flow_assets.connectors.http import TransientError
from flow_assets.connectors.slack import (
    PageParser,
    SlackClient,
    SlackConnection,
    ts_of,
    ts_to_time,
)
from flow_assets.sandbox.slack import SlackSandbox

APP = {"client_id": "77.88", "client_secret": "tests-secret"}
BOTH = "public_channel,private_channel"


@pytest.fixture(scope="module")
def sandbox():
    with SlackSandbox(messages=300, bot_token="xoxb-tests-token", **APP) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(sandbox):
    sandbox.requests.clear()
    for fault in sandbox.pending_faults():
        pytest.fail(f"a fault was left pending by an earlier test: {fault}")
    yield


def bot(sandbox, token="xoxb-tests-token", **kwargs) -> SlackClient:
    return SlackConnection(base_url=sandbox.url + "/api", token=token, connection_name="sl",
                           channel_types=BOTH, **kwargs).open()  # fmt: skip


def rotating(
    sandbox, store: Path | None, refresh: str | None = None, secret: str = APP["client_secret"]
) -> SlackClient:
    return SlackConnection(
        base_url=sandbox.url + "/api", refresh_token=refresh or sandbox.issue_refresh_token(),
        token_store=str(store) if store else None, connection_name="sl", channel_types=BOTH,
        client_id=APP["client_id"], client_secret=secret,
    ).open()  # fmt: skip


def read(client, object_name, **request) -> pl.DataFrame:
    fields = request.pop("fields", None) or list(client.describe(object_name).fields)
    pages = list(client.read(ReadRequest(object=object_name, fields=fields, **request)))
    return pl.concat(pages).sort("ts" if object_name == "messages" else "id")


def history(sandbox) -> list[str]:
    return [r for r in sandbox.requests if "conversations.history" in r]


def readable(sandbox) -> pl.DataFrame:
    return sandbox.frame("messages").filter(pl.col("channel").is_in(sandbox.member_channels()))


def test_registered_as_a_source():
    assert CONNECTION_TYPES["slack"] is SlackConnection
    assert "slack" in SOURCE_CONNECTORS


@pytest.mark.parametrize("object_name", ["channels", "users", "messages"])
def test_each_object_reads_typed_and_equal_to_the_truth(sandbox, object_name):
    client = bot(sandbox)
    got = read(client, object_name, page_size=25)
    truth = readable(sandbox) if object_name == "messages" else sandbox.frame(object_name)
    assert_frame_equal(got, truth.select(got.columns).sort(got.columns[1 if object_name ==
                                                                      "messages" else 0]))  # fmt: skip
    schema = client.describe(object_name).fields
    assert not any(f.filterable for f in schema.values())  # nothing is pushed down
    assert "profile" not in schema and "topic" not in schema and "blocks" not in schema


def test_types_and_times_of_channels_and_users(sandbox):
    client = bot(sandbox)
    channels, users = client.describe("channels").fields, client.describe("users").fields
    assert str(channels["created"].dtype) == "Datetime(time_unit='us', time_zone='UTC')"
    assert channels["num_members"].dtype == pl.Int64 and users["is_bot"].dtype == pl.Boolean
    got = read(client, "channels", fields=["id", "created", "updated"])
    wire = {c["id"]: c for c in sandbox._data["channels"]}
    for row in got.iter_rows(named=True):  # created is in seconds, updated in milliseconds
        assert row["created"] == datetime.fromtimestamp(wire[row["id"]]["created"], UTC)
        assert row["updated"] == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            milliseconds=wire[row["id"]]["updated"])  # fmt: skip


@pytest.mark.parametrize(
    ("ts", "moment"),
    [
        ("1700000000.000100", datetime(2023, 11, 14, 22, 13, 20, 100, tzinfo=UTC)),
        ("1700000000.999999", datetime(2023, 11, 14, 22, 13, 20, 999999, tzinfo=UTC)),
        ("1700000001.000000", datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC)),
        ("4102444799.000001", datetime(2099, 12, 31, 23, 59, 59, 1, tzinfo=UTC)),
    ],
)
def test_ts_and_datetime_convert_exactly_to_the_microsecond(ts, moment):
    assert ts_of(moment) == ts
    got = pl.DataFrame({"ts": [ts]}).select(t=ts_to_time())["t"][0]
    assert got == moment


def test_a_ts_that_is_not_one_is_named():
    schema = SlackConnection(token="x").open().describe("messages")
    parser = PageParser("messages", "messages", schema, ["ts", "posted_at"], client=None)
    body = b'{"ok":true,"messages":[{"ts":"yesterday"}],"has_more":false}'
    with pytest.raises(MalformedResponse, match="record yesterday: ts is not a Slack ts"):
        parser.parse(body, 2, "conversations.history")
    body = b'{"ok":true,"messages":[{"ts":"1700000000.5"}],"has_more":false}'  # not six digits
    with pytest.raises(MalformedResponse, match="record 1700000000.5: ts is not a Slack ts"):
        parser.parse(body, 2, "conversations.history")


def test_the_incremental_edge_is_exact_to_the_microsecond(sandbox):
    truth = readable(sandbox).sort("posted_at")
    # Two messages a microsecond apart: a cursor on the first keeps the second, not the first.
    gaps = truth.with_columns(gap=pl.col("posted_at").diff()).filter(
        pl.col("gap") == timedelta(microseconds=1))  # fmt: skip
    edge = truth.filter(pl.col("posted_at") < gaps["posted_at"][0])["posted_at"][-1]
    got = read(bot(sandbox), "messages", fields=["ts", "posted_at"], cursor_field="posted_at",
               cursor_after=edge)  # fmt: skip
    newer = truth.filter(pl.col("posted_at") > edge)
    assert sorted(got["ts"]) == sorted(newer["ts"]) and got.height > 0
    assert gaps["ts"][0] in got["ts"].to_list()
    assert all(f"oldest={ts_of(edge)}" in r and "inclusive=0" in r for r in history(sandbox))


def test_a_window_from_is_inclusive_and_before_exclusive(sandbox):
    truth = readable(sandbox).sort("posted_at")
    low, high = truth["posted_at"][40], truth["posted_at"][120]
    got = read(bot(sandbox), "messages", fields=["ts"], cursor_field="posted_at",
               cursor_from=low, cursor_before=high)  # fmt: skip
    expected = truth.filter(pl.col("posted_at").is_between(low, high, closed="left"))
    assert sorted(got["ts"]) == sorted(expected["ts"]) and got.height == 80
    assert f"latest={ts_of(high)}" in history(sandbox)[0]
    assert f"oldest={ts_of(low - timedelta(microseconds=1))}" in history(sandbox)[0]


def test_channels_and_users_filter_an_incremental_read_locally(sandbox):
    truth = sandbox.frame("users")
    saved = truth["updated"].sort()[30]
    got = read(bot(sandbox), "users", fields=["id"], cursor_field="updated", cursor_after=saved)
    assert sorted(got["id"]) == sorted(truth.filter(pl.col("updated") > saved)["id"])
    assert not any("updated" in r or "oldest" in r for r in sandbox.requests)  # no such argument


def test_list_paging_follows_next_cursor_until_it_is_empty(sandbox):
    pages = list(bot(sandbox).read(ReadRequest("users", ["id"], page_size=7)))
    calls = [r for r in sandbox.requests if "users.list" in r]
    users = sandbox.frame("users").height
    assert len(calls) == len(pages) == -(-users // 7)
    assert "cursor=" not in calls[0] and all("cursor=" in r for r in calls[1:])
    assert sum(p.height for p in pages) == users


def test_history_pages_while_has_more_channel_by_channel(sandbox):
    client = bot(sandbox)
    got = read(client, "messages", fields=["channel", "ts"], page_size=10)
    counts = readable(sandbox).group_by("channel").len()
    expected_calls = sum(max(1, -(-n // 10)) for n in counts["len"])
    # has_more is false on the page holding a channel's oldest message: ceil(n / 10) calls.
    assert len(history(sandbox)) == expected_calls
    assert got.group_by("channel").len().sort("channel").equals(counts.sort("channel"))
    non_member = set(sandbox.frame("channels")["id"]) - set(sandbox.member_channels())
    assert not any(c in r for c in non_member for r in history(sandbox))


def test_has_more_without_a_cursor_is_malformed(sandbox):
    client = SlackConnection(token="x", connection_name="sl", channels=["C1"]).open()
    answers = iter([b'{"ok":true,"messages":[{"ts":"1.000001"}],"has_more":true}'])
    client.http.request = lambda *a, parse, **k: parse(next(answers))
    with pytest.raises(MalformedResponse, match="has_more but has no next_cursor"):
        list(client.read(ReadRequest("messages", ["ts"])))


def test_named_channels_only_and_a_channel_the_bot_is_not_in_fails_clearly(sandbox):
    member = sandbox.member_channels()[2]
    got = read(bot(sandbox, channels=[member]), "messages", fields=["channel", "ts"])
    assert set(got["channel"]) == {member}
    assert not any("conversations.list" in r for r in sandbox.requests)
    outside = (set(sandbox.frame("channels")["id"]) - set(sandbox.member_channels())).pop()
    with pytest.raises(ConnectorError, match="not_in_channel; invite the app"):
        read(bot(sandbox, channels=[outside]), "messages", fields=["ts"])


def test_an_ok_false_answer_is_an_error_never_data():
    schema = SlackConnection(token="x").open().describe("users")
    client = SlackConnection(token="x", connection_name="sl").open()
    parser = PageParser("users", "members", schema, ["id"], client)
    with pytest.raises(AuthError, match="'sl': users.list answered ok:false, invalid_auth"):
        parser.parse(b'{"ok":false,"error":"invalid_auth"}', 1, "users.list")
    with pytest.raises(AuthError, match="needs the scope users:read"):
        parser.parse(b'{"ok":false,"error":"missing_scope","needed":"users:read"}', 1, "users.list")
    refusal = client._refusal("users.list", {"ok": False, "error": "internal_error"})
    assert isinstance(refusal, TransientError)  # retried, not final


def test_a_wrong_bot_token_fails_check_naming_the_connection(sandbox):
    bot(sandbox).check()
    with pytest.raises(AuthError) as failed:
        bot(sandbox, token="xoxb-wrong-token").check()
    assert "'sl'" in str(failed.value) and "invalid_auth" in str(failed.value)
    assert "xoxb-wrong-token" not in str(failed.value)


def test_a_429_is_waited_out_with_retry_after(sandbox):
    client = bot(sandbox)
    sandbox.inject("429", path_contains="users.list", retry_after=0.4, after=1)
    started = time.monotonic()
    got = read(client, "users", fields=["id"], page_size=20)
    assert time.monotonic() - started >= 0.4
    assert client.http.stats.retries == 1 and got.height == sandbox.frame("users").height


def test_a_malformed_page_is_retried_then_named(sandbox):
    client = bot(sandbox, max_attempts=2)
    sandbox.inject("malformed", count=1, path_contains="cursor=")
    assert read(client, "users", fields=["id"], page_size=20).height == 60  # retried
    sandbox.inject("malformed", count=2, path_contains="cursor=")
    with pytest.raises(MalformedResponse, match="page 2 of users .users.list. is not valid JSON"):
        read(client, "users", fields=["id"], page_size=20)


def test_a_rotating_token_survives_expiry_and_keeps_the_new_refresh_token(sandbox, tmp_path):
    store = tmp_path / "tokens.json"
    first = sandbox.issue_refresh_token()
    client = rotating(sandbox, store, refresh=first)
    sandbox.inject("expire_token", path_contains="conversations.history", after=1)
    rotations = sandbox.rotations
    got = read(client, "messages", fields=["ts"], page_size=50)
    assert got.height == readable(sandbox).height
    assert client.http.stats.reauthentications == 1
    assert sandbox.rotations == rotations + 2  # the first token, then the expired one's renewal
    kept = json.loads(store.read_text())
    assert kept["refresh_token"] not in (first, None) and kept["access_token"].startswith("xoxe.")
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    # The configured refresh token was used up; the next run works from the store.
    rotating(sandbox, store, refresh=first).check()
    assert read(rotating(sandbox, store, refresh=first), "users", fields=["id"]).height == 60


def test_without_a_store_a_used_refresh_token_is_refused_with_the_fix(sandbox):
    first = sandbox.issue_refresh_token()
    rotating(sandbox, None, refresh=first).check()
    with pytest.raises(AuthError, match="invalid_refresh_token.*set token_store") as failed:
        rotating(sandbox, None, refresh=first).check()
    assert first not in str(failed.value)


def test_a_wrong_client_secret_is_refused_naming_the_connection(sandbox):
    with pytest.raises(AuthError, match="'sl': token rotation failed: bad_client_secret") as failed:
        rotating(sandbox, None, secret="nope-secret").check()
    assert "nope-secret" not in str(failed.value)


def test_a_static_token_that_expires_is_final_and_says_how_to_rotate(sandbox):
    client = bot(sandbox, token=sandbox.issue_access_token())
    sandbox.inject("expire_token", path_contains="users.list", after=1)
    with pytest.raises(AuthError, match="token_expired; the token rotates"):
        read(client, "users", fields=["id"], page_size=20)
    assert client.http.stats.reauthentications == 0


def test_an_unknown_object_is_named_with_a_suggestion(sandbox):
    with pytest.raises(UnknownObject, match="did you mean 'messages'"):
        bot(sandbox).describe("message")


def test_slack_sdk_reads_the_sandbox(sandbox):
    slack_sdk = pytest.importorskip("slack_sdk")
    client = slack_sdk.WebClient(token="xoxb-tests-token", base_url=sandbox.url + "/api/")
    channels = [c for page in client.conversations_list(types=BOTH, limit=3)
                for c in page["channels"]]  # fmt: skip
    assert sorted(c["id"] for c in channels) == sorted(sandbox.frame("channels")["id"])
    member = sandbox.member_channels()[0]
    messages = [m for page in client.conversations_history(channel=member, limit=7)
                for m in page["messages"]]  # fmt: skip
    truth = sandbox.frame("messages").filter(pl.col("channel") == member)
    assert sorted(m["ts"] for m in messages) == sorted(truth["ts"])
    users = [u for page in client.users_list(limit=9) for u in page["members"]]
    assert len(users) == sandbox.frame("users").height
    # The SDK posts its arguments as a form, and followed next_cursor page by page.
    assert sandbox.requests.count("/api/users.list") == -(-len(users) // 9)
    with pytest.raises(slack_sdk.errors.SlackApiError) as refused:
        slack_sdk.WebClient(token="xoxb-nope", base_url=sandbox.url + "/api/").auth_test()
    assert refused.value.response["error"] == "invalid_auth"
