"""Records that change in the sandbox, and Salesforce's Get Updated / Get Deleted resources over
them, checked over real HTTP and with simple-salesforce over TLS."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
import requests
import trustme
from simple_salesforce import Salesforce

from flow_assets.sandbox import SalesforceSandbox

CLIENT = {"client_id": "flowbridge-sandbox", "client_secret": "sandbox-secret"}
V = "/services/data/v59.0"


@pytest.fixture
def sandbox():
    """Each test changes records: a small sandbox of its own, caches on."""
    with SalesforceSandbox(records=300, page_cache_mb=8) as sb:
        yield sb


@pytest.fixture
def api(sandbox):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {sandbox.issue_access_token()}"
    yield session
    session.close()


def query(api, sandbox, soql: str, endpoint: str = "query") -> dict:
    response = api.get(f"{sandbox.url}{V}/{endpoint}/", params={"q": soql})
    assert response.status_code == 200, response.text
    return response.json()


def window(api, sandbox, which: str, start: datetime, end: datetime):
    params = {"start": start.isoformat(), "end": end.isoformat()}
    return api.get(f"{sandbox.url}{V}/sobjects/Opportunity/{which}/", params=params)


def test_updates_move_amount_stage_and_stamps_and_deletes_hide_records(sandbox, api):
    before = sandbox.frame("Opportunity")
    change = sandbox.change_records("Opportunity", count=6, seed=3, delete=2)
    after = sandbox.frame("Opportunity")
    assert len(change.updated) == 6 and len(change.deleted) == 2
    assert not set(change.updated) & set(change.deleted)
    assert change.stamp > before["SystemModstamp"].max()

    touched = after.filter(pl.col("Id").is_in(change.updated + change.deleted))
    assert set(touched["SystemModstamp"]) == {change.stamp}
    updated = after.filter(pl.col("Id").is_in(change.updated))
    assert set(updated["LastModifiedDate"]) == {change.stamp}
    assert (updated["Amount"] != before.filter(pl.col("Id").is_in(change.updated))["Amount"]).all()
    assert (updated["IsWon"] == (updated["StageName"] == "Closed Won")).all()
    assert (updated["IsClosed"] == updated["StageName"].str.starts_with("Closed")).all()
    # Everything else is as it was.
    untouched = pl.col("Id").is_in(change.updated + change.deleted).not_()
    assert after.filter(untouched).equals(before.filter(untouched))

    assert query(api, sandbox, "SELECT COUNT() FROM Opportunity")["totalSize"] == 298
    assert query(api, sandbox, "SELECT COUNT() FROM Opportunity", "queryAll")["totalSize"] == 300
    gone = query(api, sandbox, "SELECT Id, IsDeleted FROM Opportunity WHERE IsDeleted = true",
                 "queryAll")["records"]  # fmt: skip
    assert sorted(r["Id"] for r in gone) == change.deleted
    one = api.get(f"{sandbox.url}{V}/sobjects/Opportunity/{change.deleted[0]}")
    assert (one.status_code, one.json()[0]["errorCode"]) == (404, "ENTITY_IS_DELETED")


def test_a_change_clears_the_cached_pages(sandbox, api):
    soql = "SELECT Id, Amount, SystemModstamp FROM Opportunity"
    first = query(api, sandbox, soql)
    assert query(api, sandbox, soql) == first
    assert sandbox.stats()["page_cache_hits"] >= 1
    change = sandbox.change_records("Opportunity", count=3, seed=9)
    answer = {r["Id"]: r for r in query(api, sandbox, soql)["records"]}
    truth = sandbox.frame("Opportunity").filter(pl.col("Id").is_in(change.updated))
    for rid, amount in truth.select("Id", "Amount").iter_rows():
        assert answer[rid]["Amount"] == amount
        assert answer[rid]["SystemModstamp"].startswith(change.stamp.strftime("%Y-%m-%dT%H:%M"))


def test_every_change_is_newer_than_the_last(sandbox):
    newest = sandbox.frame("Opportunity")["SystemModstamp"].max()
    behind = datetime(2020, 1, 1, tzinfo=UTC)  # a clock behind the data, or one millisecond
    stamps = [sandbox.change_records(count=1, seed=s, at=behind).stamp for s in range(3)]
    assert stamps == [newest + timedelta(milliseconds=n) for n in (1, 2, 3)]


def test_admin_http_call_changes_records(sandbox):
    answer = requests.post(
        sandbox.url + "/__sandbox/changes",
        json={"object": "Opportunity", "count": 4, "seed": 2, "delete": 1},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["updated"]) == 4 and len(body["deleted"]) == 1
    assert body["stamp"].endswith("+0000")
    frame = sandbox.frame("Opportunity")
    assert frame.filter(pl.col("IsDeleted"))["Id"].to_list() == body["deleted"]
    for bad, says in (
        ({"count": 1000}, "only 299 live records"),
        ({"count": -1}, "count must be a non-negative integer"),
        ({"object": "Lead"}, "unknown sObject"),
        ({"records": 3}, "a change takes the keys"),
    ):
        refused = requests.post(sandbox.url + "/__sandbox/changes", json=bad)
        assert refused.status_code == 400 and says in refused.json()["error"], bad


def test_get_updated_and_get_deleted_answer_the_window(sandbox, api):
    now = datetime.now(UTC)
    at = (now - timedelta(minutes=10)).replace(second=20)
    change = sandbox.change_records("Opportunity", count=5, seed=4, delete=2, at=at)
    # The seconds of both ends are ignored: a start 40 seconds after the change still sees it.
    updated = window(api, sandbox, "updated", at + timedelta(seconds=30), now)
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert sorted(body["ids"]) == change.updated
    covered = now.replace(second=0, microsecond=0)
    assert body["latestDateCovered"] == covered.strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    deleted = window(api, sandbox, "deleted", at - timedelta(minutes=1), now).json()
    assert [r["id"] for r in deleted["deletedRecords"]] == change.deleted
    assert {r["deletedDate"] for r in deleted["deletedRecords"]} == {
        at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    }
    assert set(deleted) == {"deletedRecords", "earliestDateAvailable", "latestDateCovered"}

    later = window(api, sandbox, "updated", at + timedelta(minutes=1), now).json()
    assert later["ids"] == []  # the change's minute is before this window
    # Up to the current minute only, however late the end: what changes now is not settled.
    unsettled = sandbox.change_records(
        "Opportunity", count=1, seed=6, at=now + timedelta(minutes=2)
    )
    ahead = window(api, sandbox, "updated", at, now + timedelta(minutes=10)).json()
    assert sorted(ahead["ids"]) == change.updated and unsettled.updated[0] not in ahead["ids"]


@pytest.mark.parametrize(
    ("start", "end", "code", "message"),
    [
        (timedelta(days=-31), timedelta(0), "INVALID_REPLICATION_DATE",
         "startDate cannot be more than 30 days ago"),
        (timedelta(minutes=-5), timedelta(minutes=-10), "INVALID_REPLICATION_DATE",
         "startDate must chronologically precede endDate"),
        (None, timedelta(0), "MISSING_ARGUMENT", "start not specified"),
        ("yesterday", timedelta(0), "INVALID_REPLICATION_DATE", "is not a dateTime"),
    ],
)  # fmt: skip
def test_bad_windows_are_refused_as_salesforce_refuses_them(
    sandbox, api, start, end, code, message
):
    now = datetime.now(UTC)
    params = {"end": (now + end).isoformat()}
    if start is not None:
        params["start"] = start if isinstance(start, str) else (now + start).isoformat()
    for which in ("updated", "deleted"):
        answer = api.get(f"{sandbox.url}{V}/sobjects/Opportunity/{which}/", params=params)
        assert answer.status_code == 400
        [error] = answer.json()
        assert error["errorCode"] == code and message in error["message"]


def test_one_minute_window_is_the_smallest(sandbox, api):
    start = datetime.now(UTC).replace(second=5)
    same_minute = window(api, sandbox, "updated", start, start + timedelta(seconds=40))
    assert same_minute.status_code == 400  # both ends are the same minute once seconds go
    assert window(api, sandbox, "updated", start, start + timedelta(minutes=1)).status_code == 200


def test_simple_salesforce_reads_updated_and_deleted_over_tls(tmp_path):
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with SalesforceSandbox(records=300, ssl_context=server_context) as sb:
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides `verify`
        session.verify = str(ca_file)
        login = session.post(
            sb.url + "/services/oauth2/token", data={"grant_type": "client_credentials", **CLIENT}
        )
        login.raise_for_status()
        sf = Salesforce(
            instance_url=login.json()["instance_url"],
            session_id=login.json()["access_token"],
            version="59.0",
            session=session,
        )
        now = datetime.now(UTC)
        change = sb.change_records(count=3, seed=8, delete=1, at=now - timedelta(minutes=3))
        updated = sf.Opportunity.updated(now - timedelta(minutes=5), now)
        assert sorted(updated["ids"]) == change.updated
        deleted = sf.Opportunity.deleted(now - timedelta(minutes=5), now)
        assert [r["id"] for r in deleted["deletedRecords"]] == change.deleted
        assert sb.stats()["updated"] == 1 and sb.stats()["deleted"] == 1
