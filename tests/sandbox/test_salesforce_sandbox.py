"""The Salesforce sandbox speaks Salesforce's documented REST API: auth, describe,
SOQL paging, error bodies and injected faults, checked over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import signal
import ssl
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
import requests
import trustme
from simple_salesforce import Salesforce

from flow_assets.sandbox import SalesforceSandbox

RECORDS = 6000  # 600 accounts: enough for every awkward account name, including "100% ..."
CLIENT = {"client_id": "flowbridge-sandbox", "client_secret": "sandbox-secret"}
V = "/services/data/v59.0"
LOCATOR_URL = re.compile(r"^/services/data/v59\.0/query/01g[0-9A-Za-z]{15}-(\d+)$")
SF_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


@pytest.fixture(scope="module")
def sandbox():
    with SalesforceSandbox(records=RECORDS, seed=7) as sb:
        yield sb


@pytest.fixture(autouse=True)
def _no_leftover_faults(sandbox):
    yield
    sandbox.reset_faults()


@pytest.fixture()
def token(sandbox) -> str:
    # Per test: the expire_token fault invalidates every token issued before it.
    response = requests.post(
        sandbox.url + "/services/oauth2/token", data={"grant_type": "client_credentials", **CLIENT}
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture()
def api(sandbox, token):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    yield session
    session.close()


@pytest.fixture(scope="module")
def opportunities(sandbox) -> pl.DataFrame:
    return sandbox.frame("Opportunity")


def query_all(api, base_url, soql, batch_size=None, endpoint="query"):
    """Follow nextRecordsUrl to the end; returns (records, pages)."""
    headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else {}
    response = api.get(f"{base_url}{V}/{endpoint}/", params={"q": soql}, headers=headers)
    pages = []
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        if page["done"]:
            assert "nextRecordsUrl" not in page
            break
        response = api.get(base_url + page["nextRecordsUrl"], headers=headers)
    return [r for p in pages for r in p["records"]], pages


def error_of(response):
    body = response.json()
    assert isinstance(body, list) and len(body) == 1, body
    return body[0]["errorCode"], body[0]["message"]


# --- auth --------------------------------------------------------------------------


def test_versions_list_needs_no_auth(sandbox):
    response = requests.get(sandbox.url + "/services/data/")
    assert response.status_code == 200
    versions = response.json()
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions
    assert versions[-1]["version"] == "59.0"


def test_client_credentials_token(sandbox):
    response = requests.post(
        sandbox.url + "/services/oauth2/token", data={"grant_type": "client_credentials", **CLIENT}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == sandbox.url
    assert re.fullmatch(re.escape(sandbox.url) + r"/id/00D\w{15}/005\w{15}", body["id"])
    assert body["issued_at"].isdigit()
    assert "refresh_token" not in body
    expected = hmac.new(
        b"sandbox-secret", (body["id"] + body["issued_at"]).encode(), hashlib.sha256
    ).digest()
    assert base64.b64decode(body["signature"]) == expected
    data = requests.get(
        sandbox.url + f"{V}/limits/", headers={"Authorization": "Bearer " + body["access_token"]}
    )
    assert data.status_code == 200
    assert data.json()["DailyApiRequests"]["Remaining"] < data.json()["DailyApiRequests"]["Max"]


def test_client_credentials_in_basic_auth_header(sandbox):
    response = requests.post(
        sandbox.url + "/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(CLIENT["client_id"], CLIENT["client_secret"]),
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


def test_password_grant_then_refresh(sandbox):
    login = requests.post(
        sandbox.url + "/services/oauth2/token",
        data={
            "grant_type": "password",
            "username": "sandbox@flowbridge.local",
            "password": "sandbox-password",
            **CLIENT,
        },
    )
    assert login.status_code == 200, login.text
    refreshed = requests.post(
        sandbox.url + "/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": login.json()["refresh_token"],
            **CLIENT,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert "refresh_token" not in refreshed.json()
    assert refreshed.json()["access_token"] != login.json()["access_token"]
    issued = requests.post(
        sandbox.url + "/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": sandbox.issue_refresh_token(),
            **CLIENT,
        },
    )
    assert issued.status_code == 200


@pytest.mark.parametrize(
    ("form", "error", "description"),
    [
        (
            {
                "grant_type": "client_credentials",
                "client_id": "flowbridge-sandbox",
                "client_secret": "wrong",
            },
            "invalid_client",
            "invalid client credentials",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            {"grant_type": "refresh_token", "refresh_token": "5Aep-made-up", **CLIENT},
            "invalid_grant",
            "expired access/refresh token",
        ),
        (
            {
                "grant_type": "password",
                "username": "sandbox@flowbridge.local",
                "password": "guess",
                **CLIENT,
            },
            "invalid_grant",
            "authentication failure",
        ),
        (
            {"grant_type": "authorization_code", "code": "x", **CLIENT},
            "invalid_grant",
            "invalid authorization code",
        ),
        ({"grant_type": "implicit", **CLIENT}, "unsupported_grant_type", None),
    ],
    ids=[
        "bad-secret",
        "unknown-client",
        "bad-refresh",
        "bad-password",
        "unknown-code",
        "unsupported-grant",
    ],
)
def test_token_failures_use_documented_bodies(sandbox, form, error, description):
    response = requests.post(sandbox.url + "/services/oauth2/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == error
    if description:
        assert response.json()["error_description"] == description


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-token", "Basic Zm9vOmJhcg=="],
    ids=["none", "bad", "basic"],
)
def test_data_calls_without_a_valid_session_get_401(sandbox, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(sandbox.url + f"{V}/sobjects/", headers=headers)
    assert response.status_code == 401
    assert response.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


def test_oauth_scheme_is_accepted_like_bearer(sandbox, token):
    response = requests.get(
        sandbox.url + f"{V}/sobjects/", headers={"Authorization": f"OAuth {token}"}
    )
    assert response.status_code == 200


# --- metadata ------------------------------------------------------------------------


def test_describe_global(sandbox, api):
    body = api.get(sandbox.url + f"{V}/sobjects/").json()
    assert body["encoding"] == "UTF-8" and body["maxBatchSize"] == 200
    by_name = {s["name"]: s for s in body["sobjects"]}
    assert set(by_name) >= {"Account", "Contact", "Opportunity"}
    opp = by_name["Opportunity"]
    assert opp["keyPrefix"] == "006" and opp["labelPlural"] == "Opportunities"
    assert opp["queryable"] and opp["retrieveable"] and not opp["custom"]
    assert opp["urls"]["describe"] == f"{V}/sobjects/Opportunity/describe"


@pytest.mark.parametrize("suffix", ["describe", "describe/"])
def test_describe_opportunity(sandbox, api, suffix):
    response = api.get(sandbox.url + f"{V}/sobjects/Opportunity/{suffix}")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Opportunity" and body["keyPrefix"] == "006" and body["queryable"]
    fields = {f["name"]: f for f in body["fields"]}
    expected = {
        "Id": ("id", "tns:ID"),
        "Name": ("string", "xsd:string"),
        "AccountId": ("reference", "tns:ID"),
        "Amount": ("currency", "xsd:double"),
        "StageName": ("picklist", "xsd:string"),
        "CloseDate": ("date", "xsd:date"),
        "Probability": ("percent", "xsd:double"),
        "IsWon": ("boolean", "xsd:boolean"),
        "TotalOpportunityQuantity": ("double", "xsd:double"),
        "Email__c": ("email", "xsd:string"),
        "Phone__c": ("phone", "xsd:string"),
        "Description": ("textarea", "xsd:string"),
        "SystemModstamp": ("datetime", "xsd:dateTime"),
    }
    for name, (sf_type, soap) in expected.items():
        assert (fields[name]["type"], fields[name]["soapType"]) == (sf_type, soap), name
    assert fields["Id"]["length"] == 18 and fields["Id"]["idLookup"]
    assert fields["AccountId"]["referenceTo"] == ["Account"]
    assert fields["Amount"]["nillable"] and (
        fields["Amount"]["precision"],
        fields["Amount"]["scale"],
    ) == (18, 2)
    assert fields["Email__c"]["custom"] and not fields["Name"]["custom"]
    stages = [p["value"] for p in fields["StageName"]["picklistValues"]]
    assert "Closed Won" in stages and "Prospecting" in stages
    required = {
        "label",
        "nillable",
        "length",
        "precision",
        "scale",
        "updateable",
        "createable",
        "filterable",
        "sortable",
        "externalId",
        "idLookup",
        "custom",
        "picklistValues",
    }
    assert all(required <= set(f) for f in body["fields"])
    assert [f["name"] for f in body["fields"]] == sandbox.frame("Opportunity").columns


def test_describe_account_has_int_and_url_fields(sandbox, api):
    fields = {
        f["name"]: f["type"]
        for f in api.get(sandbox.url + f"{V}/sobjects/Account/describe").json()["fields"]
    }
    assert fields["NumberOfEmployees"] == "int" and fields["Website"] == "url"


def test_unknown_object_is_not_found(sandbox, api):
    response = api.get(sandbox.url + f"{V}/sobjects/Foo/describe/")
    assert response.status_code == 404
    assert response.json() == [
        {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}
    ]


def test_other_api_versions_are_accepted(sandbox, api):
    for version in ("v58.0", "v60.0"):
        response = api.get(
            sandbox.url + f"/services/data/{version}/query",
            params={"q": "SELECT Id FROM Account LIMIT 1"},
        )
        assert response.status_code == 200
        assert response.json()["records"][0]["attributes"]["url"].startswith(
            f"/services/data/{version}/sobjects/Account/"
        )


def test_record_by_id(sandbox, api, opportunities):
    row = opportunities.row(41, named=True)
    body = api.get(sandbox.url + f"{V}/sobjects/Opportunity/{row['Id']}").json()
    assert body["attributes"] == {
        "type": "Opportunity",
        "url": f"{V}/sobjects/Opportunity/{row['Id']}",
    }
    assert body["Name"] == row["Name"] and body["Amount"] == row["Amount"]
    assert api.get(sandbox.url + f"{V}/sobjects/Opportunity/006Hs0099999999IAA").status_code == 404


# --- queries -----------------------------------------------------------------------


def test_paging_with_batch_size_header(sandbox, api, opportunities):
    records, pages = query_all(
        api, sandbox.url, "SELECT Id, Amount FROM Opportunity", batch_size=500
    )
    assert [len(p["records"]) for p in pages] == [500] * (RECORDS // 500)
    assert all(p["totalSize"] == RECORDS for p in pages)
    offsets = [int(LOCATOR_URL.match(p["nextRecordsUrl"]).group(1)) for p in pages[:-1]]
    assert offsets == list(range(500, RECORDS, 500))
    ids = [r["Id"] for r in records]
    assert len(set(ids)) == len(ids) == RECORDS
    assert ids == opportunities["Id"].to_list()  # stable order: the org's row order
    assert list(records[0]) == ["attributes", "Id", "Amount"]
    assert records[0]["attributes"] == {
        "type": "Opportunity",
        "url": f"{V}/sobjects/Opportunity/{ids[0]}",
    }


def test_default_batch_is_2000_and_batch_size_is_clamped(sandbox, api):
    _, pages = query_all(api, sandbox.url, "SELECT Id FROM Opportunity")
    assert [len(p["records"]) for p in pages] == [2000, 2000, 2000]
    _, pages = query_all(api, sandbox.url, "SELECT Id FROM Opportunity", batch_size=50)
    assert len(pages[0]["records"]) == 200  # the documented minimum


def test_values_are_serialised_like_salesforce(sandbox, api, opportunities):
    fields = opportunities.columns
    soql = f"SELECT {', '.join(fields)} FROM Opportunity"
    records, _ = query_all(api, sandbox.url, soql)
    assert [list(r)[1:] for r in records[:1]] == [fields]
    for record, row in zip(records, opportunities.iter_rows(named=True), strict=True):
        for name in fields:
            value, truth = record[name], row[name]
            if isinstance(truth, datetime):
                assert SF_DATETIME.match(value)
                assert datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z") == truth
            elif isinstance(truth, date):
                assert value == truth.isoformat()
            else:
                assert value == truth and type(value) is type(truth), (name, value, truth)
    assert any(r["Amount"] is None for r in records)


def test_int_fields_are_json_integers(sandbox, api):
    records, _ = query_all(
        api, sandbox.url, "SELECT NumberOfEmployees FROM Account WHERE NumberOfEmployees != null"
    )
    assert records and all(type(r["NumberOfEmployees"]) is int for r in records)


def _lower(name):
    return pl.col(name).str.to_lowercase()


WHERE_CASES = [
    ("Amount > 10000", pl.col("Amount") > 10000),
    ("Amount >= 500.5", pl.col("Amount") >= 500.5),
    ("Amount < -100", pl.col("Amount") < -100),
    ("Amount <= 1000 AND Amount > 0", (pl.col("Amount") <= 1000) & (pl.col("Amount") > 0)),
    ("Amount = null", pl.col("Amount").is_null()),
    ("Amount != null", pl.col("Amount").is_not_null()),
    ("StageName = 'closed won'", _lower("StageName") == "closed won"),
    # SOQL has no unknown truth value: != keeps rows whose field is null.
    (
        "Description != 'Expansion into the EMEA region.'",
        (pl.col("Description") != "Expansion into the EMEA region.").fill_null(True),
    ),
    ("StageName <> 'Prospecting'", pl.col("StageName") != "Prospecting"),
    ("StageName IN ('Closed Won', 'Closed Lost')", pl.col("StageName").str.starts_with("Closed")),
    (
        "StageName NOT IN ('Closed Won', 'Closed Lost')",
        ~pl.col("StageName").str.starts_with("Closed"),
    ),
    ("Name LIKE 'o\\'brien%'", _lower("Name").str.starts_with("o'brien")),
    ("Name = 'O\\'Brien & Sons - Renewal'", pl.col("Name") == "O'Brien & Sons - Renewal"),
    ("Name LIKE '%\"Quoted\"%'", pl.col("Name").str.contains('"Quoted"', literal=True)),
    ("Name LIKE 'Back\\\\Slash%'", pl.col("Name").str.starts_with("Back\\Slash")),
    ("Name LIKE '100\\% Juice Co\\_op%'", pl.col("Name").str.starts_with("100% Juice Co_op")),
    ("Name LIKE '100_ Juice%'", pl.col("Name").str.starts_with("100% Juice")),
    ("Name LIKE '%Café%'", pl.col("Name").str.contains("Café", literal=True)),
    ("Email__c LIKE '%@EXAMPLE.COM'", _lower("Email__c").str.ends_with("@example.com")),
    ("IsWon = true", pl.col("IsWon")),
    ("IsClosed = FALSE", ~pl.col("IsClosed")),
    ("NOT IsWon = true", ~pl.col("IsWon")),
    (
        "(IsWon = true OR Amount > 150000) AND Amount < 180000",
        (pl.col("IsWon") | (pl.col("Amount") > 150000)) & (pl.col("Amount") < 180000),
    ),
    (
        "NOT (StageName = 'Prospecting' OR StageName = 'Qualification')",
        ~pl.col("StageName").is_in(["Prospecting", "Qualification"]),
    ),
    ("CloseDate >= 2025-01-01", pl.col("CloseDate") >= date(2025, 1, 1)),
    (
        "SystemModstamp > 2025-06-01T00:00:00Z",
        pl.col("SystemModstamp") > datetime(2025, 6, 1, tzinfo=UTC),
    ),
    (
        "SystemModstamp > 2025-06-01T00:00:00.000Z",
        pl.col("SystemModstamp") > datetime(2025, 6, 1, tzinfo=UTC),
    ),
    # Same instant written with an offset: comparisons are between instants.
    (
        "SystemModstamp > 2025-06-01T02:00:00+02:00",
        pl.col("SystemModstamp") > datetime(2025, 6, 1, tzinfo=UTC),
    ),
    (
        "CreatedDate <= 2024-03-01T12:30:00-05:00",
        pl.col("CreatedDate") <= datetime(2024, 3, 1, 17, 30, tzinfo=UTC),
    ),
    ("Probability = 10", pl.col("Probability") == 10),
    (
        "TotalOpportunityQuantity IN (1, 1.5, 2)",
        pl.col("TotalOpportunityQuantity").is_in([1.0, 1.5, 2.0]),
    ),
]


@pytest.mark.parametrize(("where", "truth"), WHERE_CASES, ids=[w for w, _ in WHERE_CASES])
def test_where_matches_the_truth(sandbox, api, opportunities, where, truth):
    soql = f"SELECT Id FROM Opportunity WHERE {where}"
    records, _ = query_all(api, sandbox.url, soql)
    expected = opportunities.filter(truth.fill_null(False))["Id"].to_list()
    assert expected, "the case must select something to be meaningful"
    assert [r["Id"] for r in records] == expected


def test_keywords_and_field_names_are_case_insensitive(sandbox, api, opportunities):
    records, _ = query_all(
        api, sandbox.url, "select id, amount from OPPORTUNITY where AMOUNT > 190000"
    )
    assert list(records[0]) == ["attributes", "Id", "Amount"]
    assert records[0]["attributes"]["type"] == "Opportunity"
    assert len(records) == opportunities.filter(pl.col("Amount") > 190000).height


def test_order_by_limit_offset(sandbox, api, opportunities):
    soql = "SELECT Id, Amount FROM Opportunity ORDER BY Amount DESC NULLS LAST LIMIT 30 OFFSET 5"
    records, _ = query_all(api, sandbox.url, soql)
    truth = opportunities.sort("Amount", descending=True, nulls_last=True, maintain_order=True)
    assert [r["Id"] for r in records] == truth["Id"][5:35].to_list()
    first, _ = query_all(
        api, sandbox.url, "SELECT Id, Amount FROM Opportunity ORDER BY Amount LIMIT 3"
    )
    assert all(r["Amount"] is None for r in first)  # nulls sort first by default


def test_count_query(sandbox, api, opportunities):
    response = api.get(
        sandbox.url + f"{V}/query",
        params={"q": "SELECT COUNT() FROM Opportunity WHERE IsWon = true"},
    )
    assert response.json() == {
        "totalSize": opportunities["IsWon"].sum(),
        "done": True,
        "records": [],
    }


def test_query_all_pages_through_query_urls(sandbox, api):
    records, pages = query_all(api, sandbox.url, "SELECT Id FROM Opportunity", endpoint="queryAll")
    assert len(records) == RECORDS
    assert LOCATOR_URL.match(pages[0]["nextRecordsUrl"])  # documented: query, not queryAll
    more = api.get(sandbox.url + pages[0]["nextRecordsUrl"].replace("/query/", "/queryAll/"))
    assert more.json()["records"] == pages[1]["records"]


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        (
            "SELECT Foo FROM Opportunity",
            "INVALID_FIELD",
            "\nSELECT Foo FROM Opportunity\n       ^\nERROR at Row:1:Column:8\n"
            "No such column 'Foo' on entity 'Opportunity'.",
        ),
        (
            "SELECT Id FROM Opportunity WHERE Bar__c = 1",
            "INVALID_FIELD",
            "No such column 'Bar__c' on entity 'Opportunity'",
        ),
        ("SELECT Id FROM Foo", "INVALID_TYPE", "sObject type 'Foo' is not supported."),
        ("SELECT Id FROM", "MALFORMED_QUERY", "unexpected token"),
        (
            "SELECT Id FROM Opportunity WHERE Amount > 1 AND Amount < 5 OR IsWon = true",
            "MALFORMED_QUERY",
            "unexpected token: 'OR'",
        ),
        ("SELECT Id FROM Opportunity WHERE Name = 'open", "MALFORMED_QUERY", "string"),
        (
            "SELECT Id FROM Opportunity WHERE Amount = '5'",
            "INVALID_FIELD",
            "value of filter criterion for field 'Amount' must be of type double",
        ),
    ],
    ids=[
        "bad-field",
        "bad-where-field",
        "bad-object",
        "truncated",
        "mixed-and-or",
        "unterminated",
        "quoted-number",
    ],
)
def test_query_errors(sandbox, api, soql, code, fragment):
    response = api.get(sandbox.url + f"{V}/query/", params={"q": soql})
    assert response.status_code == 400
    error_code, message = error_of(response)
    assert error_code == code
    assert fragment in message


def test_unknown_locator(sandbox, api):
    response = api.get(sandbox.url + f"{V}/query/01gHs0000009999IAA-2000")
    assert response.status_code == 400
    assert error_of(response) == ("INVALID_QUERY_LOCATOR", "invalid query locator")


# --- faults -------------------------------------------------------------------------


def test_fault_429_has_retry_after(sandbox, api):
    sandbox.inject("429")
    sandbox.inject("429", retry_after=3)
    first = api.get(sandbox.url + f"{V}/limits/")
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    assert error_of(first)[0] == "REQUEST_LIMIT_EXCEEDED"
    assert api.get(sandbox.url + f"{V}/limits/").headers["Retry-After"] == "3"
    assert api.get(sandbox.url + f"{V}/limits/").status_code == 200


def test_fault_503(sandbox, api):
    sandbox.inject("503")
    response = api.get(sandbox.url + f"{V}/sobjects/")
    assert response.status_code == 503
    assert response.json() == [{"message": "Server unavailable", "errorCode": "SERVER_UNAVAILABLE"}]


def test_fault_reset_drops_the_connection(sandbox, api):
    sandbox.inject("reset")
    with pytest.raises(requests.ConnectionError):
        api.get(sandbox.url + f"{V}/sobjects/")
    assert api.get(sandbox.url + f"{V}/sobjects/").status_code == 200


def test_fault_expire_token(sandbox):
    token = sandbox.issue_access_token()
    headers = {"Authorization": f"Bearer {token}"}
    sandbox.inject("expire_token")
    response = requests.get(sandbox.url + f"{V}/sobjects/", headers=headers)
    assert response.status_code == 401
    assert error_of(response) == ("INVALID_SESSION_ID", "Session expired or invalid")
    assert requests.get(sandbox.url + f"{V}/sobjects/", headers=headers).status_code == 401
    fresh = {"Authorization": f"Bearer {sandbox.issue_access_token()}"}
    assert requests.get(sandbox.url + f"{V}/sobjects/", headers=fresh).status_code == 200


def test_fault_malformed_json(sandbox, api):
    sandbox.inject("malformed")
    response = api.get(sandbox.url + f"{V}/query", params={"q": "SELECT Id FROM Account"})
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_fault_limit_exceeded(sandbox, api):
    sandbox.inject("limit_exceeded")
    response = api.get(sandbox.url + f"{V}/sobjects/")
    assert response.status_code == 403
    assert error_of(response) == ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")


def test_fault_count_after_and_path_filter(sandbox, api):
    before = sandbox.stats()
    sandbox.inject("429", count=2, path_contains="/query/", after=1)
    first = api.get(
        sandbox.url + f"{V}/query/",
        params={"q": "SELECT Id FROM Opportunity"},
        headers={"Sforce-Query-Options": "batchSize=1000"},
    )
    assert first.status_code == 200  # the initial query is not a queryMore page
    next_url = sandbox.url + first.json()["nextRecordsUrl"]
    statuses = [api.get(next_url).status_code for _ in range(4)]
    assert statuses == [200, 429, 429, 200]
    after = sandbox.stats()
    assert after["faults"]["429"] - before["faults"]["429"] == 2
    assert after["query_more"] - before["query_more"] == 4
    assert after["query"] - before["query"] == 1


def test_admin_http_api(sandbox, api):
    created = requests.post(sandbox.url + "/__sandbox/faults", json={"kind": "503", "count": 3})
    assert created.status_code == 201 and created.json()["faults"][0]["count"] == 3
    assert (
        requests.post(sandbox.url + "/__sandbox/faults", json={"kind": "teapot"}).status_code == 400
    )
    assert api.get(sandbox.url + f"{V}/sobjects/").status_code == 503
    assert (
        requests.get(sandbox.url + "/__sandbox/stats").json()["faults"]["503"] >= 1
    )  # never faulted
    assert requests.delete(sandbox.url + "/__sandbox/faults").status_code == 200
    assert api.get(sandbox.url + f"{V}/sobjects/").status_code == 200


# --- data, determinism, real client ---------------------------------------------------


def test_data_shape(opportunities):
    amount = opportunities["Amount"]
    assert 0.25 < (amount > 10000).mean() < 0.45
    assert 0.005 < amount.is_null().mean() < 0.03 and 0.003 < (amount < 0).mean() < 0.02
    assert (opportunities["SystemModstamp"].diff().drop_nulls().dt.total_milliseconds() > 0).all()
    assert opportunities["SystemModstamp"].min() >= datetime(2024, 1, 1, tzinfo=UTC)
    assert opportunities["SystemModstamp"].max() < datetime(2026, 1, 1, tzinfo=UTC)
    assert (opportunities["CreatedDate"] <= opportunities["LastModifiedDate"]).all()
    assert (opportunities["LastModifiedDate"] <= opportunities["SystemModstamp"]).all()
    phones = opportunities["Phone__c"].drop_nulls()
    for pattern in (
        r"^\(\d{3}\) 555-\d{4}$",
        r"^\d{3}\.555\.\d{4}$",
        r"^\+1 \d{3}-555-\d{4}$",
        r"^\d{10}$",
    ):
        assert phones.str.contains(pattern).any(), pattern
    emails = opportunities["Email__c"].drop_nulls()
    assert (
        emails.str.contains("[A-Z]").any()
        and (~emails.str.contains(r"^[^@\s]+@[^@\s]+\.\w+$")).any()
    )


def test_same_seed_gives_the_same_bytes(sandbox):
    def capture(sb):
        token = sb.issue_access_token()
        session = requests.Session()
        session.headers.update(
            {"Authorization": f"Bearer {token}", "Sforce-Query-Options": "batchSize=700"}
        )
        first = session.get(
            sb.url + f"{V}/query",
            params={
                "q": "SELECT Id, Name, Amount, CreatedDate FROM Opportunity WHERE Amount > 5000"
            },
        )
        second = session.get(sb.url + first.json()["nextRecordsUrl"])
        describe = session.get(sb.url + f"{V}/sobjects/Contact/describe")
        return first.content, second.content, describe.content

    with (
        SalesforceSandbox(records=RECORDS, seed=7) as one,
        SalesforceSandbox(records=RECORDS, seed=7) as two,
    ):
        assert capture(one) == capture(two)
        assert one.frame("Contact").equals(two.frame("Contact"))
    with SalesforceSandbox(records=RECORDS, seed=8) as other:
        assert not other.frame("Opportunity").equals(sandbox.frame("Opportunity"))


def test_simple_salesforce_client_over_tls(tmp_path):
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with SalesforceSandbox(records=3000, ssl_context=server_context) as sb:
        assert sb.url.startswith("https://")
        session = requests.Session()
        # Otherwise REQUESTS_CA_BUNDLE in the environment silently overrides `verify`.
        session.trust_env = False
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
        result = sf.query_all(
            "SELECT Id, Amount FROM Opportunity WHERE Amount > 10000",
            headers={"Sforce-Query-Options": "batchSize=200"},  # several queryMore pages
        )
        truth = sb.frame("Opportunity").filter(pl.col("Amount") > 10000).select("Id", "Amount")
        assert [(r["Id"], r["Amount"]) for r in result["records"]] == truth.rows()
        assert sb.stats()["query_more"] >= 4
        described = sf.Opportunity.describe()
        assert described["name"] == "Opportunity"
        assert "Amount" in {f["name"] for f in described["fields"]}
        assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 3000


def test_cli_serves_until_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "flow_assets.sandbox", "--port", "0", "--records", "100"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"Salesforce sandbox listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        assert requests.get(match.group(1) + "/services/data/", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
