"""The Zendesk destination against a sandbox of its own (writes change its data): tickets created
and upserted by external_id, read back through the sandbox's own API (the incremental export,
Show Multiple Tickets), 100 a job; refused tickets in the error location with Zendesk's error
code; faults on the create (429 survived, a 5xx or lost answer not repeated) and on the job's
polling; zenpy creating tickets in bulk against the sandbox; and the example flow S3 ->
Zendesk, with a Zendesk -> lake -> (edited) -> S3 -> Zendesk round trip."""

import io
import json
import time

import dagster as dg
import polars as pl
import pytest
import requests
from polars.testing import assert_frame_equal

from flow_assets.connectors.errors import ConnectorError
from flow_assets.connectors.zendesk import ZendeskConnection
from flow_assets.destinations.lake import Lake
from flow_assets.destinations.staging import ParquetBatchWriter
from flow_assets.destinations.zendesk_sink import ZendeskIOManager
from flow_assets.sandbox.zendesk import ZendeskSandbox
from tests.conftest import copy_project, materialization, run_flow

CLIENT = {"client_id": "zendesk-tests", "client_secret": "tests-secret"}
RECORDS = 120  # the sandbox's own tickets (every 9th deleted), none with an external_id
FIELDS = ["external_id", "subject", "description", "priority", "status", "type", "tags"]
BUCKET, FLOW = "flowbridge-example-outbound", "zendesk_tickets_from_s3"


@pytest.fixture
def own(monkeypatch):
    """A sandbox these tests may change; the example connection points at it."""
    with ZendeskSandbox(records=RECORDS, api_token="tests-api-token", **CLIENT) as sb:
        monkeypatch.setenv("ZENDESK_SANDBOX_URL", sb.url)
        monkeypatch.setenv("ZENDESK_SANDBOX_CLIENT_ID", CLIENT["client_id"])
        monkeypatch.setenv("ZENDESK_SANDBOX_CLIENT_SECRET", CLIENT["client_secret"])
        yield sb


def write(sb, tmp_path, frame: pl.DataFrame, how: str = "upsert") -> dict:
    """The destination's handle_output on `frame`, staged as a flow would; its metadata."""
    folder = tmp_path / f"staged-{len(list(tmp_path.glob('staged-*')))}"
    with ParquetBatchWriter(folder, frame.schema) as writer:
        writer.write(frame)
    manager = ZendeskIOManager(
        connection=ZendeskConnection(base_url=sb.url, connection_name="zd", **CLIENT),
        error_root=str(tmp_path / "lake"),
    )
    context = dg.build_output_context(
        asset_key=dg.AssetKey(["f", "records"]), run_id="run-1",
        definition_metadata={"flowbridge/settings": json.dumps({"connection": "zd"}),
                             "flowbridge/write": how, "flowbridge/key": "external_id"},
    )  # fmt: skip
    manager.handle_output(context, writer.staged())
    return {k: getattr(v, "value", v) for k, v in context.get_logged_metadata().items()}


def rejected(tmp_path, table: str = "f") -> pl.DataFrame:
    return Lake(tmp_path / "lake").scan(f"{table}__rejected").collect()


def api(sb, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {sb.issue_access_token()}"}
    return requests.request(method, sb.url + path, headers=headers, timeout=30, **kwargs)


def exported(sb, start_time: int = 0) -> pl.DataFrame:
    """Every live ticket the incremental export lists from start_time, as it answers them."""
    rows, url = [], f"/api/v2/incremental/tickets/cursor.json?start_time={start_time}"
    while True:
        body = api(sb, "GET", url).json()
        rows += [t for t in body["tickets"] if t["status"] != "deleted"]
        if body["end_of_stream"]:
            break
        url = body["after_url"].removeprefix(sb.url)
    schema = {"id": pl.Int64, "updated_at": pl.String, "generated_timestamp": pl.Int64,
              **{n: pl.String for n in FIELDS}, "tags": pl.List(pl.String)}  # fmt: skip
    return pl.DataFrame([{n: t.get(n) for n in schema} for t in rows], schema=schema)


def ours(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("external_id").is_not_null()).sort("external_id")


def tickets(n: int, tag: str, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame({
        "external_id": [f"ORD-{i:05d}" for i in range(start, start + n)],
        "subject": [f"Order {i} {tag}" for i in range(start, start + n)],
        "description": [f"Order {i} arrived damaged" for i in range(start, start + n)],
        "priority": [("low", "normal", "high", "urgent")[(i + len(tag)) % 4]
                     for i in range(start, start + n)],
        "status": [("open", "pending", "solved")[i % 3] for i in range(start, start + n)],
        "type": [("question", "incident", "task")[i % 3] for i in range(start, start + n)],
        "tags": [["orders", tag] for _ in range(n)],
    }, schema_overrides={"tags": pl.List(pl.String)})  # fmt: skip


def calls(sb, part: str) -> int:
    return sum(part in r for r in sb.requests)


def test_create_then_upsert_by_external_id_hold_exactly_and_a_rerun_changes_nothing(own, tmp_path):
    before = time.time()
    created = tickets(150, "new")
    meta = write(own, tmp_path, created, "insert")
    assert (meta["rows_written"], meta["rows_created"], meta["batches"]) == (150, 150, 2)
    assert calls(own, "/tickets/create_many") == 2  # 100 tickets a job
    assert_frame_equal(ours(exported(own)).select(FIELDS), created)

    # 120 edited, 40 new: the 100 of the first batch are updated in one job, then 20 updated
    # and 40 created
    edited = tickets(120, "edited").with_columns(pl.lit("on hold?").alias("subject"))
    sent = pl.concat([edited, tickets(40, "more", start=150)])
    own.requests.clear()
    meta = write(own, tmp_path, sent)
    assert (meta["rows_written"], meta["rows_created"], meta["batches"]) == (160, 40, 2)
    assert (calls(own, "/update_many"), calls(own, "/create_many")) == (2, 1)
    assert calls(own, "/api/v2/tickets.json?external_id=") == 160  # one lookup per key
    expected = pl.concat([sent, created.slice(120)]).sort("external_id")
    assert_frame_equal(ours(exported(own)).select(FIELDS), expected)
    # The description is the first comment: an update leaves it as created.
    assert ours(exported(own))["description"][0] == "Order 0 arrived damaged"

    # Written tickets carry a new updated_at and generated_timestamp: the export lists them
    # from the second the writes began (the sandbox's clock moved past the minute rule).
    now = own.now
    own.now = lambda: now() + 120
    since = exported(own, start_time=int(before))
    assert since["external_id"].drop_nulls().sort().to_list() == expected["external_id"].to_list()
    assert since.height == 190 and (since["generated_timestamp"] >= int(before)).all()
    own.now = now

    whole = ours(exported(own))
    again = write(own, tmp_path, sent)
    assert (again["rows_written"], again["rows_created"]) == (160, 0)
    assert_frame_equal(ours(exported(own)), whole)  # no duplicates, not even a new updated_at


def test_records_zendesk_refuses_go_to_the_error_location_with_its_code(own, tmp_path):
    write(own, tmp_path, tickets(3, "first"), "insert")
    write(own, tmp_path, tickets(2, "twice", start=10), "insert")  # ORD-00010 twice
    write(own, tmp_path, tickets(1, "twice", start=10), "insert")
    sent = pl.concat([
        tickets(1, "ok"),                                                # ORD-00000: updated
        tickets(1, "bad").with_columns(priority=pl.lit("urgentish")),    # ORD-00000 again
        tickets(1, "bad", start=1).with_columns(priority=pl.lit("urgentish")),
        tickets(1, "new", start=5).with_columns(description=pl.lit(None, pl.String)),
        tickets(1, "new", start=6),                                      # created
        tickets(1, "x", start=10),                                       # two tickets have it
        tickets(1, "x", start=7).with_columns(external_id=pl.lit(None, pl.String)),
    ])  # fmt: skip
    meta = write(own, tmp_path, sent.with_columns(requester_id=pl.lit(None, pl.Int64)))
    assert (meta["rows_written"], meta["rows_created"]) == (2, 1)
    assert meta["rows_refused_by_destination"] == 5
    reasons = dict(zip(*rejected(tmp_path).select("external_id", "_fb_reason"), strict=True))
    assert reasons == {
        "ORD-00000": "DuplicateExternalId: an earlier record of the same batch has this "
        "external_id; only that one was written",
        "ORD-00001": "TicketUpdateFailed: Priority: <value> is not valid",  # Zendesk quoted it
        "ORD-00005": "TicketCreateFailed: Description: cannot be blank",
        "ORD-00010": "AmbiguousExternalId: 2 tickets have this external_id; give them distinct "
        "ones",
        None: "MissingExternalId: write upsert matches tickets on external_id; this record has "
        "none",
    }
    held = ours(exported(own))
    assert held.filter(pl.col("external_id") == "ORD-00000")["subject"].to_list() == ["Order 0 ok"]
    first = tickets(3, "first")["priority"][1]
    assert held.filter(pl.col("external_id") == "ORD-00001")["priority"].to_list() == [first]
    assert held.filter(pl.col("external_id") == "ORD-00005").height == 0
    assert held.filter(pl.col("external_id") == "ORD-00006").height == 1

    unknown = tickets(1, "who", start=20).with_columns(requester_id=pl.lit(99, pl.Int64))
    write(own, tmp_path, unknown, "insert")
    reason = rejected(tmp_path).filter(pl.col("external_id") == "ORD-00020")["_fb_reason"]
    assert reason.to_list() == ["TicketCreateFailed: Requester: is invalid"]


def test_fields_zendesk_does_not_take_fail_the_run_before_any_request(own, tmp_path):
    sent = tickets(3, "x")
    cases = [
        (sent.rename({"subject": "Subjcet"}), "upsert",
         r"tickets has no field 'Subjcet' \(did you mean 'subject'\?\)"),
        (sent.with_columns(created_at=pl.lit("2025-01-01")), "upsert",
         "tickets.created_at is set by Zendesk"),
        (sent.with_columns(tags=pl.lit("a,b")), "upsert", "tickets.tags takes List, but the records hold String"),
        (sent.drop("description"), "insert", "needs the field description"),
        (sent.drop("external_id"), "upsert", "needs the field external_id"),
    ]  # fmt: skip
    for frame, how, error in cases:
        with pytest.raises(ConnectorError, match=error):
            write(own, tmp_path, frame, how)
    assert own.requests == [] and own.writes.calls.total() == 0


def test_a_429_on_create_many_and_a_full_job_queue_are_waited_out(own, tmp_path):
    own.inject("429", count=2, path_contains="/tickets/create_many", retry_after=0.1)
    meta = write(own, tmp_path, tickets(30, "busy"), "insert")
    assert (meta["rows_written"], meta["rows_created"]) == (30, 30)
    assert calls(own, "/tickets/create_many") == 3 and own.pending_faults() == []

    # 30 jobs queued by others fill Zendesk's job queue: the next create_many is answered 429
    # (not applied) until they have run.
    own.writes.job_seconds = 1.0
    for i in range(30):
        one = {"tickets": [{"external_id": f"OTHER-{i}", "comment": {"body": "x"}}]}
        assert api(own, "POST", "/api/v2/tickets/create_many.json", json=one).status_code == 200
    full = api(own, "POST", "/api/v2/tickets/create_many.json", json=one)
    assert (full.status_code, full.json()["error"], full.headers["Retry-After"]) == (
        429, "TooManyJobs", "1")  # fmt: skip
    own.requests.clear()
    meta = write(own, tmp_path, tickets(5, "queue", start=100), "insert")
    assert (meta["rows_written"], meta["rows_created"]) == (5, 5)
    assert calls(own, "/tickets/create_many") >= 2  # refused while the queue was full
    held = ours(exported(own))
    assert held.height == 30 + 30 + 5  # every ticket once


def test_a_5xx_or_a_lost_answer_on_create_many_is_not_repeated(own, tmp_path):
    own.inject("503", count=1, path_contains="/tickets/create_many")
    with pytest.raises(ConnectorError, match="not repeated.*check Zendesk before re-running"):
        write(own, tmp_path, tickets(10, "lost"), "insert")
    assert calls(own, "/tickets/create_many") == 1 and ours(exported(own)).height == 0

    # A lost answer: Zendesk queued the job but its answer broke off. The job runs anyway, so a
    # second create would have made every ticket twice; an upsert re-run finds them instead.
    own.writes.job_seconds = 0.5
    own.inject("malformed", count=1, path_contains="/tickets/create_many")
    with pytest.raises(ConnectorError, match="not repeated.*a re-run is safe once the job has run"):
        write(own, tmp_path, tickets(10, "lost"))
    assert calls(own, "/tickets/create_many") == 2
    time.sleep(0.6)
    again = write(own, tmp_path, tickets(10, "lost"))
    assert (again["rows_written"], again["rows_created"]) == (10, 0)
    assert_frame_equal(ours(exported(own)).select(FIELDS), tickets(10, "lost"))


def test_polling_the_job_survives_a_503(own, tmp_path):
    own.inject("503", count=2, path_contains="/job_statuses/", retry_after=0.1)
    meta = write(own, tmp_path, tickets(20, "poll"), "insert")
    assert (meta["rows_written"], meta["rows_created"]) == (20, 20)
    assert own.pending_faults() == [] and own.faults.served["503"] == 2
    assert_frame_equal(ours(exported(own)).select(FIELDS), tickets(20, "poll"))


def test_a_job_goes_queued_working_completed_and_writes_only_then(own):
    own.writes.job_seconds = 60  # only polls move it
    body = {"tickets": [{"subject": "a", "comment": {"body": "first"}, "external_id": "J-1"},
                        {"subject": "b", "priority": "soon", "external_id": "J-2"}]}  # fmt: skip
    job = api(own, "POST", "/api/v2/tickets/create_many.json", json=body).json()["job_status"]
    assert (job["status"], job["total"], job["progress"], job["results"]) == ("queued", 2, None,
                                                                              None)  # fmt: skip
    path = f"/api/v2/job_statuses/{job['id']}.json"
    working = api(own, "GET", path).json()["job_status"]
    assert (working["status"], working["progress"]) == ("working", 1)
    listed = api(own, "GET", "/api/v2/tickets.json", params={"external_id": "J-1"}).json()
    assert listed["tickets"] == []  # not written before the job completes
    done = api(own, "GET", path).json()["job_status"]
    new_id = RECORDS + 1000
    assert done["status"] == "completed" and done["progress"] == 2
    assert done["results"] == [
        {"id": new_id, "index": 0},
        {"index": 1, "error": "TicketCreateFailed",
         "details": "Description: cannot be blank; Priority: soon is not valid"},
    ]  # fmt: skip
    shown = api(own, "GET", "/api/v2/tickets/show_many.json", params={"ids": new_id}).json()
    ticket = shown["tickets"][0]
    assert (ticket["subject"], ticket["description"], ticket["status"]) == ("a", "first", "new")

    update = {"tickets": [{"id": new_id, "status": "solved"}, {"id": 5, "status": "open"}]}
    job = api(own, "PUT", "/api/v2/tickets/update_many.json", json=update).json()["job_status"]
    for _ in range(2):
        done = api(own, "GET", f"/api/v2/job_statuses/{job['id']}.json").json()["job_status"]
    assert done["results"] == [
        {"id": new_id, "action": "update", "success": True, "status": "Updated"},
        {"id": 5, "action": "update", "success": False, "status": "Failed",
         "error": "RecordNotFound", "details": "Ticket not found"},
    ]  # fmt: skip
    too_many = {"tickets": [{"comment": {"body": "x"}}] * 101}
    answer = api(own, "POST", "/api/v2/tickets/create_many.json", json=too_many)
    assert answer.status_code == 400 and "100" in answer.json()["description"]


def test_zenpy_creates_tickets_in_bulk_and_polls_the_job(own, monkeypatch):
    zenpy = pytest.importorskip("zenpy")
    from zenpy.lib.api_objects import Comment, Ticket

    # zenpy builds https://{subdomain}.{domain}; these two variables are its own override.
    monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
    monkeypatch.setenv("ZENPY_FORCE_NETLOC", own.url.removeprefix("http://"))
    client = zenpy.Zenpy(subdomain="sandbox", email=own.email, token="tests-api-token")
    job = client.tickets.create([
        Ticket(subject=f"zenpy {i}", external_id=f"ZEN-{i}", priority="high",
               comment=Comment(body=f"Made by zenpy ({i})"))
        for i in range(3)
    ])  # fmt: skip
    assert job.status == "queued" and job.total == 3
    for _ in range(10):
        job = client.job_status(id=job.id)
        if job.status == "completed":
            break
        time.sleep(0.05)
    assert job.status == "completed"
    ids = sorted(r.id for r in job.results)  # zenpy reads them as JobStatusResult objects
    assert ids == [RECORDS + 1000, RECORDS + 1001, RECORDS + 1002]
    found = list(client.tickets(external_id="ZEN-1"))
    assert [(t.id, t.subject, t.description, t.priority) for t in found] == [
        (RECORDS + 1001, "zenpy 1", "Made by zenpy (1)", "high")
    ]


TO_LAKE = f"""\
name: tickets_to_lake
source:
  connection: zendesk_sandbox
  object: tickets
  fields: [id, {", ".join(FIELDS)}]
destination: {{connector: lake, write: overwrite}}
"""


def put(s3, frame: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    s3.put_object(Bucket=BUCKET, Key="tickets/part-0.parquet", Body=buffer.getvalue())


def test_the_example_flow_creates_then_updates_tickets_from_s3(own, tmp_path, aws, instance):
    """S3 -> Zendesk creates tickets; Zendesk -> lake, K edited with Polars, -> S3 -> Zendesk
    updates exactly those by external_id; a re-run changes nothing."""
    project = copy_project(tmp_path)
    s3 = aws("s3")
    s3.create_bucket(Bucket=BUCKET)
    refused = tickets(1, "new", start=999).with_columns(description=pl.lit(None, pl.String))
    put(s3, pl.concat([tickets(150, "new"), refused]))
    result = run_flow(project, instance, FLOW)
    assert result.success
    meta = materialization(result, FLOW, "records")
    assert (meta["rows_written"], meta["rows_created"]) == (150, 150)
    assert meta["rows_refused_by_destination"] == 1
    bad = Lake(project.lake_dir).scan(f"{FLOW}__rejected").collect()
    assert bad["external_id"].to_list() == ["ORD-00999"]
    assert bad["_fb_reason"].to_list() == ["TicketCreateFailed: Description: cannot be blank"]

    (project.flows_dir / "tickets_to_lake.yaml").write_text(TO_LAKE)
    assert run_flow(project, instance, "tickets_to_lake").success
    lake = ours(Lake(project.lake_dir).scan("tickets_to_lake").collect())
    assert_frame_equal(lake.select(FIELDS), tickets(150, "new"))

    k = 25
    edited = lake.select(FIELDS).with_columns(
        pl.when(pl.int_range(pl.len()) < k).then(pl.lit("urgent")).otherwise("priority")
        .alias("priority")
    )  # fmt: skip
    put(s3, edited)
    before = ours(exported(own))
    now = own.now
    own.now = lambda: now() + 3600  # the sandbox's clock: updates are stamped an hour on
    result = run_flow(project, instance, FLOW)
    assert result.success
    meta = materialization(result, FLOW, "records")
    assert (meta["rows_written"], meta["rows_created"]) == (150, 0)
    held = ours(exported(own))
    assert_frame_equal(held.select(FIELDS), edited)  # exactly the edited values
    moved = held.filter(pl.col("updated_at") != before["updated_at"])["external_id"]
    differs = edited.filter(pl.col("priority") != before["priority"])["external_id"]
    assert moved.to_list() == differs.to_list() and 0 < len(differs) <= k  # only those changed

    assert run_flow(project, instance, FLOW).success
    assert_frame_equal(ours(exported(own)), held)  # a re-run changes nothing
    assert exported(own).height == held.height + RECORDS - RECORDS // 9
