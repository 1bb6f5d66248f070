"""The sandbox's page cache: the same bytes as without it, hits counted, the byte bound kept."""

from __future__ import annotations

import json

import pytest
import requests

from flow_assets.sandbox import SalesforceSandbox
from flow_assets.sandbox.page_cache import LruCache

RECORDS = 6000
V = "/services/data/v59.0"
PLAIN = "SELECT Id, Name, Amount, StageName, CloseDate, SystemModstamp FROM Opportunity"
# Whitespace and identifier case differ, literals do not: the same query to the cache.
PLAIN_RESPELLED = "select  id,name , AMOUNT,StageName,closedate,\n SystemModstamp from opportunity"
FILTERED = (
    "SELECT Id, Name, Amount FROM Opportunity WHERE Amount > 5000 AND Name LIKE '%a  b%' "
    "ORDER BY Amount DESC NULLS LAST, Name"
)


def session_for(sb: SalesforceSandbox, batch: int | None = None) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {sb.issue_access_token()}"
    if batch:
        session.headers["Sforce-Query-Options"] = f"batchSize={batch}"
    return session


def read(session: requests.Session, base: str, soql: str, endpoint: str = "query") -> list[bytes]:
    """Every page's body, following nextRecordsUrl to the end."""
    response = session.get(f"{base}{V}/{endpoint}/", params={"q": soql})
    bodies = []
    while True:
        assert response.status_code == 200, response.text
        bodies.append(response.content)
        next_url = json.loads(response.content).get("nextRecordsUrl")
        if not next_url:
            return bodies
        response = session.get(base + next_url)


def conversation(sb: SalesforceSandbox) -> list[bytes]:
    """A fixed sequence of reads, each query twice, so the second comes from the cache."""
    bodies = []
    for batch, soql, endpoint in [
        (None, PLAIN, "query"),
        (None, PLAIN, "query"),
        (None, PLAIN_RESPELLED, "query"),
        (700, PLAIN, "query"),
        (700, PLAIN, "queryAll"),
        (500, FILTERED, "query"),
        (500, FILTERED, "query"),
        (None, "SELECT Id, Name FROM Opportunity WHERE Amount > 5000 LIMIT 2500", "query"),
        (None, "SELECT COUNT() FROM Opportunity WHERE Amount > 5000", "query"),
        (None, "SELECT Id FROM Account", "query"),
        (None, "SELECT Id FROM Account", "query"),
        (300, PLAIN, "query"),
    ]:
        bodies += read(session_for(sb, batch), sb.url, soql, endpoint)
    return bodies


@pytest.fixture()
def cached():
    with SalesforceSandbox(records=RECORDS, seed=7, page_cache_mb=64) as sb:
        yield sb


def test_the_same_bytes_with_and_without_the_cache(cached):
    with SalesforceSandbox(records=RECORDS, seed=7) as plain:
        expected = conversation(plain)
        assert plain.stats()["page_cache_hits"] == plain.stats()["page_cache_misses"] == 0
    assert conversation(cached) == expected
    assert cached.stats()["page_cache_hits"] > 0


def test_hits_and_misses_are_counted(cached):
    first = read(session_for(cached), cached.url, PLAIN)
    assert len(first) == 3
    stats = cached.stats()
    assert (stats["page_cache_hits"], stats["page_cache_misses"]) == (0, 3)
    # The cache holds each page's records array, the envelope is written per answer.
    assert stats["page_cache_bytes"] == sum(len(b) - b.index(b"[") - 1 for b in first)

    second = read(session_for(cached), cached.url, PLAIN_RESPELLED)
    stats = cached.stats()
    assert (stats["page_cache_hits"], stats["page_cache_misses"]) == (3, 3)
    # Only the locator in nextRecordsUrl differs between the two executions.
    assert [json.loads(b)["records"] for b in second] == [json.loads(b)["records"] for b in first]
    assert second[0] != first[0]

    # queryAll, another batch size and another API version are other pages.
    read(session_for(cached), cached.url, PLAIN, endpoint="queryAll")
    read(session_for(cached, batch=1000), cached.url, PLAIN)
    session = session_for(cached)
    assert session.get(cached.url + "/services/data/v58.0/query/", params={"q": PLAIN}).ok
    stats = cached.stats()
    assert (stats["page_cache_hits"], stats["page_cache_misses"]) == (3, 3 + 3 + 6 + 1)

    assert requests.delete(cached.url + "/__sandbox/stats").ok
    over_http = requests.get(cached.url + "/__sandbox/stats").json()
    assert (over_http["page_cache_hits"], over_http["page_cache_misses"]) == (0, 0)
    assert over_http["page_cache_bytes"] == stats["page_cache_bytes"]  # contents are kept


def test_faults_apply_before_the_cache(cached):
    read(session_for(cached), cached.url, PLAIN)  # every page now cached
    session = session_for(cached)
    first = session.get(cached.url + f"{V}/query/", params={"q": PLAIN})
    next_url = cached.url + first.json()["nextRecordsUrl"]
    cached.inject("503", path_contains="/query/")
    assert session.get(next_url).status_code == 503
    cached.inject("malformed", path_contains="/query/")
    cut = session.get(next_url)
    assert cut.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.content)
    assert json.loads(session.get(next_url).content)["records"]


def test_the_byte_bound_is_honoured():
    with SalesforceSandbox(records=RECORDS, seed=7, page_cache_mb=1) as sb:
        session = session_for(sb, batch=500)
        soql = (
            "SELECT Id, Name, Amount, StageName, CloseDate, Email__c, Phone__c, CreatedDate, "
            "LastModifiedDate, SystemModstamp FROM Opportunity"
        )
        pages = read(session, sb.url, soql)
        assert sum(len(b) for b in pages) > 2 * 1024 * 1024  # twice what the cache may hold
        stats = sb.stats()
        assert 0 < stats["page_cache_bytes"] <= 1024 * 1024
        assert (stats["page_cache_hits"], stats["page_cache_misses"]) == (0, len(pages))
        # Least recently used went first: the last page is still cached, the first is not.
        locator_url = sb.url + json.loads(pages[0])["nextRecordsUrl"].rsplit("-", 1)[0]
        assert session.get(f"{locator_url}-{500 * (len(pages) - 1)}").content == pages[-1]
        assert sb.stats()["page_cache_hits"] == 1
        assert session.get(f"{locator_url}-0").ok
        assert sb.stats()["page_cache_misses"] == len(pages) + 1
        again = read(session, sb.url, soql)
        assert [json.loads(b)["records"] for b in again] == [
            json.loads(b)["records"] for b in pages
        ]
        assert sb.stats()["page_cache_bytes"] <= 1024 * 1024


def test_page_cache_mb_must_be_a_non_negative_integer():
    with pytest.raises(ValueError, match="page_cache_mb"):
        SalesforceSandbox(records=10, page_cache_mb=-1)


def test_lru_cache_evicts_least_recently_used_by_bytes_and_entries():
    cache = LruCache(max_bytes=10)
    cache.put("a", b"aaaa", 4)
    cache.put("b", b"bbbb", 4)
    assert cache.get("a") == b"aaaa"  # now "b" is the least recently used
    cache.put("c", b"cccc", 4)
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    assert cache.bytes == 8 and len(cache) == 2
    cache.put("huge", b"x" * 11, 11)  # larger than the whole bound: not kept, nothing evicted
    assert cache.get("huge") is None and len(cache) == 2
    cache.put("a", b"a" * 6, 6)  # replacing an entry counts its new size only
    assert cache.bytes == 10 and cache.get("c") == b"cccc"
    assert (cache.hits, cache.misses) == (4, 2)
    cache.reset_counts()
    assert (cache.hits, cache.misses) == (0, 0) and cache.bytes == 10
    cache.clear()
    assert cache.bytes == 0 and len(cache) == 0

    by_count = LruCache(max_entries=2)
    for key in "xyz":
        by_count.put(key, key)
    assert by_count.get("x") is None and by_count.get("y") == "y" and by_count.get("z") == "z"
    with pytest.raises(ValueError):
        by_count.put("none", None)
