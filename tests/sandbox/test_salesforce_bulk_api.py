"""The Salesforce sandbox speaks Bulk API 2.0 ingest as Salesforce documents it: the job's life
(Open, UploadComplete, InProgress, JobComplete / Failed / Aborted), one CSV upload while Open,
the CSV conventions, the results files' columns, jobs failing as a whole, error bodies and
injected faults, checked over real HTTP; and simple-salesforce's Bulk 2.0 client works with it."""

from __future__ import annotations

import csv
import io
import ssl

import polars as pl
import pytest
import requests
import trustme
from simple_salesforce import Salesforce

from flow_assets.sandbox import SalesforceSandbox

CLIENT = {"client_id": "bulk-tests", "client_secret": "bulk-secret"}
V = "/services/data/v59.0"
EXT = "External_Id__c"
UPSERT = {"object": "Opportunity", "operation": "upsert", "externalIdFieldName": EXT,
          "contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA"}  # fmt: skip
HEADER = "External_Id__c,Name,StageName,CloseDate,Amount"


@pytest.fixture
def sb():
    with SalesforceSandbox(records=100, **CLIENT) as sandbox:
        yield sandbox


@pytest.fixture
def api(sb):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {sb.issue_access_token()}"
    yield session
    session.close()


def job(sb, api, body=UPSERT) -> str:
    answer = api.post(f"{sb.url}{V}/jobs/ingest", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def upload(sb, api, job_id: str, text: str, content_type: str = "text/csv"):
    return api.put(f"{sb.url}{V}/jobs/ingest/{job_id}/batches", data=text.encode(),
                   headers={"Content-Type": content_type})  # fmt: skip


def state(sb, api, job_id: str, new: str):
    return api.patch(f"{sb.url}{V}/jobs/ingest/{job_id}", json={"state": new})


def info(sb, api, job_id: str) -> dict:
    answer = api.get(f"{sb.url}{V}/jobs/ingest/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def finished(sb, api, job_id: str) -> dict:
    for _ in range(10):
        current = info(sb, api, job_id)
        if current["state"] in ("JobComplete", "Failed", "Aborted"):
            return current
    raise AssertionError(f"job {job_id} never ended")


def results(sb, api, job_id: str, which: str) -> list[list[str]]:
    answer = api.get(f"{sb.url}{V}/jobs/ingest/{job_id}/{which}/")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(answer.text)))


def run(sb, api, text: str, body=UPSERT) -> tuple[str, dict]:
    job_id = job(sb, api, body)
    assert upload(sb, api, job_id, text).status_code == 201
    assert state(sb, api, job_id, "UploadComplete").json()["state"] == "UploadComplete"
    return job_id, finished(sb, api, job_id)


def opportunity(sb, ext: str) -> dict:
    return sb.frame("Opportunity").filter(pl.col(EXT) == ext).row(0, named=True)


def test_a_job_goes_from_open_to_in_progress_to_complete_with_its_results(sb, api):
    created = api.post(f"{sb.url}{V}/jobs/ingest", json=UPSERT).json()
    assert {k: created[k] for k in ("object", "operation", "state", "externalIdFieldName",
            "contentType", "lineEnding", "columnDelimiter", "jobType")} == {
        "object": "Opportunity", "operation": "upsert", "state": "Open",
        "externalIdFieldName": EXT, "contentType": "CSV", "lineEnding": "LF",
        "columnDelimiter": "COMMA", "jobType": "V2Ingest"}  # fmt: skip
    assert created["id"].startswith("750")
    before = opportunity(sb, "OPP-00000002")
    assert created["contentUrl"] == f"services/data/v59.0/jobs/ingest/{created['id']}/batches"
    text = (f"{HEADER}\n"
            'NEW-1,"Comma, ""quoted""\nand a new line",Prospecting,2025-03-04,12.5\n'
            "NEW-2,#N/A,Prospecting,2025-03-04,1\n"
            "OPP-00000002,,Closed Won,,#N/A\n")  # fmt: skip
    assert upload(sb, api, created["id"], text).status_code == 201
    assert state(sb, api, created["id"], "UploadComplete").status_code == 200
    assert info(sb, api, created["id"])["state"] == "InProgress"  # one poll sees it
    done = info(sb, api, created["id"])
    assert (done["state"], done["numberRecordsProcessed"], done["numberRecordsFailed"]) == (
        "JobComplete", 3, 1)  # fmt: skip

    ok = results(sb, api, created["id"], "successfulResults")
    assert ok[0] == ["sf__Id", "sf__Created", *HEADER.split(",")]
    assert sorted(row[1:3] for row in ok[1:]) == [["false", "OPP-00000002"], ["true", "NEW-1"]]
    failed = results(sb, api, created["id"], "failedResults")
    assert failed == [
        ["sf__Id", "sf__Error", *HEADER.split(",")],
        ["", "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --", "NEW-2",
         "#N/A", "Prospecting", "2025-03-04", "1"],
    ]  # fmt: skip
    assert results(sb, api, created["id"], "unprocessedrecords") == [HEADER.split(",")]

    new = opportunity(sb, "NEW-1")
    assert (new["Name"], new["Amount"], str(new["CloseDate"])) == (
        'Comma, "quoted"\nand a new line', 12.5, "2025-03-04")  # fmt: skip
    assert new["Id"] == next(row[0] for row in ok[1:] if row[2] == "NEW-1")
    # An empty field leaves the field as it was, #N/A sets it to null.
    kept = opportunity(sb, "OPP-00000002")
    assert (kept["Name"], kept["CloseDate"]) == (before["Name"], before["CloseDate"])
    assert kept["StageName"] == "Closed Won" and kept["Amount"] is None
    assert before["Amount"] is not None
    assert sb.stats()["bulk_jobs"] == 1 and sb.stats()["bulk_upload"] == 1


def test_types_booleans_and_delete(sb, api):
    account = {"object": "Account", "operation": "update", "lineEnding": "CRLF"}
    text = "Id,NumberOfEmployees,AnnualRevenue\r\n001Hs0000000001IAA,12,1000.5\r\n"
    text += "001Hs0000000002IAA,many,1\r\n001Hs0000000003IAA,7,#N/A\r\n"
    job_id, done = run(sb, api, text, account)
    assert (done["numberRecordsProcessed"], done["numberRecordsFailed"]) == (3, 1)
    error = results(sb, api, job_id, "failedResults")[1][1]
    assert error == ("INVALID_TYPE_ON_FIELD_IN_RECORD:NumberOfEmployees: value not of required "
                     "type:NumberOfEmployees --")  # fmt: skip
    accounts = sb.frame("Account")
    assert accounts.row(0, named=True)["NumberOfEmployees"] == 12
    assert accounts.row(2, named=True)["AnnualRevenue"] is None

    ids = "Id\n006Hs0000000005IAA\n006Hs0000000005IAA\nbogus\n"
    job_id, done = run(sb, api, ids, {"object": "Opportunity", "operation": "delete"})
    assert (done["numberRecordsProcessed"], done["numberRecordsFailed"]) == (3, 2)
    errors = sorted(row[1].split(":")[0] for row in results(sb, api, job_id, "failedResults")[1:])
    assert errors == ["ENTITY_IS_DELETED", "MALFORMED_ID"]
    assert sb.frame("Opportunity").row(4, named=True)["IsDeleted"] is True


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({**UPSERT, "object": "Opportunty"}, "INVALIDJOB", "Unable to find object: Opportunty"),
        ({**UPSERT, "operation": "merge"}, "INVALIDJOB", "Invalid operation: merge"),
        ({**UPSERT, "externalIdFieldName": None}, "INVALIDJOB", "External ID was blank"),
        ({**UPSERT, "externalIdFieldName": "Name"}, "INVALIDJOB",
         "Name does not match an External ID"),
        ({**UPSERT, "operation": "hardDelete"}, "INVALIDJOB", "Bulk API Hard Delete permission"),
        ({**UPSERT, "lineEnding": "CR"}, "JSON_PARSER_ERROR", "lineEnding"),
        ({**UPSERT, "batchSize": 10}, "JSON_PARSER_ERROR", 'Unrecognized field "batchSize"'),
        ({"operation": "insert"}, "INVALIDJOB", "Object is required"),
    ],
)  # fmt: skip
def test_a_job_is_created_only_as_salesforce_allows(sb, api, body, code, message):
    answer = api.post(f"{sb.url}{V}/jobs/ingest", json=body)
    assert answer.status_code == 400
    assert answer.json()[0]["errorCode"] == code
    assert message in answer.json()[0]["message"]
    assert api.get(f"{sb.url}{V}/jobs/ingest").json()["records"] == []


def test_data_is_uploaded_once_and_only_while_the_job_is_open(sb, api):
    job_id = job(sb, api)
    wrong = upload(sb, api, job_id, f"{HEADER}\n", "application/json")
    assert (wrong.status_code, wrong.json()[0]["errorCode"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert upload(sb, api, job_id, f"{HEADER}\nX,Y,Prospecting,2025-01-01,1\n").status_code == 201
    again = upload(sb, api, job_id, f"{HEADER}\nX,Y,Prospecting,2025-01-01,1\n")
    assert (again.status_code, again.json()[0]["errorCode"]) == (400, "INVALIDJOBSTATE")
    assert "Found multiple contents for job" in again.json()[0]["message"]
    assert state(sb, api, job_id, "UploadComplete").status_code == 200
    closed = state(sb, api, job_id, "UploadComplete")
    assert (closed.status_code, closed.json()[0]["errorCode"]) == (400, "INVALIDJOBSTATE")
    late = upload(sb, api, job_id, f"{HEADER}\n")
    assert (late.status_code, late.json()[0]["errorCode"]) == (400, "INVALIDJOBSTATE")
    assert finished(sb, api, job_id)["numberRecordsProcessed"] == 1
    assert state(sb, api, job_id, "Aborted").status_code == 400  # it has ended
    assert api.post(f"{sb.url}{V}/jobs/ingest/{job_id}").status_code == 405
    unknown = api.get(f"{sb.url}{V}/jobs/ingest/750Hs0000009999IAA")
    assert (unknown.status_code, unknown.json()[0]["errorCode"]) == (404, "NOT_FOUND")
    anonymous = requests.get(f"{sb.url}{V}/jobs/ingest/{job_id}")
    assert anonymous.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    assert api.delete(f"{sb.url}{V}/jobs/ingest/{job_id}").status_code == 204


def test_an_aborted_job_processes_nothing(sb, api):
    job_id = job(sb, api)
    upload(sb, api, job_id, f"{HEADER}\nAB-1,Y,Prospecting,2025-01-01,1\n")
    assert state(sb, api, job_id, "Aborted").json()["state"] == "Aborted"
    assert finished(sb, api, job_id)["numberRecordsProcessed"] == 0
    assert results(sb, api, job_id, "unprocessedrecords")[1][0] == "AB-1"
    assert sb.frame("Opportunity").filter(pl.col(EXT) == "AB-1").height == 0


@pytest.mark.parametrize(
    ("body", "text", "message"),
    [
        (UPSERT, f"{HEADER},Foo__c\nF-1,Y,Prospecting,2025-01-01,1,x\n",
         "InvalidBatch : Field name not found : Foo__c"),
        (UPSERT, f"{HEADER}\r\nF-1,Y,Prospecting,2025-01-01,1\r\n",
         "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"),
        ({"object": "Opportunity", "operation": "delete"}, "Id,Name\n006Hs0000000001IAA,x\n",
         "InvalidBatch : The 'delete' batch must contain only 'Id'"),
    ],
)  # fmt: skip
def test_a_job_can_fail_as_a_whole(sb, api, body, text, message):
    job_id, done = run(sb, api, text, body)
    assert (done["state"], done["errorMessage"], done["numberRecordsProcessed"]) == (
        "Failed", message, 0)  # fmt: skip
    assert sb.frame("Opportunity").filter(pl.col(EXT) == "F-1").height == 0
    assert sb.frame("Opportunity")["IsDeleted"].sum() == 0
    unprocessed = results(sb, api, job_id, "unprocessedrecords")  # every record, as uploaded
    assert unprocessed == list(csv.reader(io.StringIO(text)))


def test_a_job_that_runs_out_of_the_daily_allocation_leaves_the_rest_unprocessed(sb, api):
    sb.bulk.daily_records = 2
    rows = "".join(f"Q-{i},Name {i},Prospecting,2025-01-01,{i}\n" for i in range(5))
    job_id, done = run(sb, api, f"{HEADER}\n{rows}")
    assert (done["state"], done["numberRecordsProcessed"]) == ("Failed", 2)
    assert done["errorMessage"].startswith("ExceededQuota")
    unprocessed = results(sb, api, job_id, "unprocessedrecords")
    assert sorted(row[0] for row in unprocessed[1:]) == ["Q-2", "Q-3", "Q-4"]
    assert sorted(sb.frame("Opportunity").filter(pl.col(EXT).str.starts_with("Q-"))[EXT]) == [
        "Q-0", "Q-1"]  # fmt: skip


def test_results_come_in_an_order_of_their_own(sb, api):
    """Salesforce promises no order in result files; neither does the sandbox."""
    rows = [f"ORD-{i:03d},Name {i},Prospecting,2025-01-01,{i}" for i in range(50)]
    job_id, _ = run(sb, api, "\n".join([HEADER, *rows]) + "\n")
    listed = [row[2] for row in results(sb, api, job_id, "successfulResults")[1:]]
    assert sorted(listed) == [row.split(",")[0] for row in rows]
    assert listed != sorted(listed)


@pytest.mark.parametrize(("fault", "status", "code"), [
    ("503", 503, "SERVER_UNAVAILABLE"), ("429", 429, "REQUEST_LIMIT_EXCEEDED"),
    ("expire_token", 401, "INVALID_SESSION_ID"),
])  # fmt: skip
def test_faults_reach_the_bulk_paths(sb, api, fault, status, code):
    job_id = job(sb, api)
    sb.inject(fault, path_contains="/batches")
    answer = upload(sb, api, job_id, f"{HEADER}\nFT-1,Y,Prospecting,2025-01-01,1\n")
    assert (answer.status_code, answer.json()[0]["errorCode"]) == (status, code)
    assert sb.stats()["faults"][fault] == 1
    if fault != "expire_token":  # the fault answered instead: the upload never landed
        assert upload(sb, api, job_id, f"{HEADER}\nFT-1,Y,Prospecting,2025-01-01,1\n").ok


def test_simple_salesforce_bulk2_client(tmp_path):
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with SalesforceSandbox(records=100, ssl_context=server_context, **CLIENT) as sb:
        session = requests.Session()
        session.trust_env = False  # else REQUESTS_CA_BUNDLE overrides `verify`
        session.verify = str(ca_file)
        sf = Salesforce(instance_url=sb.url, session_id=sb.issue_access_token(), version="59.0",
                        session=session)  # fmt: skip
        records = [{EXT: f"SS-{i}", "Name": f"Simple {i}", "StageName": "Prospecting",
                    "CloseDate": "2025-06-30", "Amount": str(i)} for i in range(30)]  # fmt: skip
        records.append({EXT: "SS-BAD", "Name": "", "StageName": "Prospecting",
                        "CloseDate": "2025-06-30", "Amount": "1"})  # fmt: skip
        [outcome] = sf.bulk2.Opportunity.upsert(records=records, external_id_field=EXT, wait=0.05)
        assert (outcome["numberRecordsProcessed"], outcome["numberRecordsFailed"]) == (31, 1)
        failed = list(csv.DictReader(io.StringIO(
            sf.bulk2.Opportunity.get_failed_records(outcome["job_id"]))))  # fmt: skip
        assert [(r[EXT], r["sf__Error"].split(":")[0]) for r in failed] == [
            ("SS-BAD", "REQUIRED_FIELD_MISSING")]  # fmt: skip
        held = sb.frame("Opportunity").filter(pl.col(EXT).str.starts_with("SS-")).sort("Amount")
        assert held["Name"].to_list() == [f"Simple {i}" for i in range(30)]
        assert sb.bulk.job(outcome["job_id"]).state == "JobComplete"
