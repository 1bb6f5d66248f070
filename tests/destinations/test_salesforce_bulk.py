"""The Salesforce destination through Bulk API 2.0 ingest jobs, against sandboxes of their own:
the automatic switch at AppFlow's 1,000 records, the same data and the same refusals as sObject
Collections for every write, results matched to records whatever their order, re-runs, faults
mid-job, jobs that fail as a whole or outlive the deadline, and no record values in reasons."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.connectors.errors import ConnectorError
from flow_assets.connectors.salesforce import SalesforceConnection
from flow_assets.destinations import salesforce_bulk
from flow_assets.destinations.lake import Lake
from flow_assets.destinations.salesforce_bulk import bulk_reason
from flow_assets.destinations.salesforce_sink import SalesforceIOManager
from flow_assets.destinations.staging import ParquetBatchWriter
from flow_assets.sandbox import SalesforceSandbox

CLIENT = {"client_id": "bulk-sink", "client_secret": "bulk-sink-secret"}
RECORDS = 300
EXT = "External_Id__c"
FIELDS = [EXT, "Name", "Amount", "StageName", "CloseDate"]
STAMPS = ["CreatedDate", "LastModifiedDate", "SystemModstamp"]  # moved by the writes' clocks
BOOKKEEPING = ["_fb_run_id", "_fb_rejected_at"]


def sandbox() -> SalesforceSandbox:
    return SalesforceSandbox(records=RECORDS, **CLIENT)


@pytest.fixture
def own():
    with sandbox() as sb:
        yield sb


@pytest.fixture
def twin():
    """A second sandbox holding the same data as `own`."""
    with sandbox() as sb:
        yield sb


def write(sb, folder: Path, frame: pl.DataFrame, how: str = "upsert", key: str = EXT,
          api: str = "bulk", **manager) -> dict:  # fmt: skip
    """The destination's handle_output on `frame`, staged as a flow stages it; its metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = folder / f"staged-{len(list(folder.glob('staged-*')))}"
    with ParquetBatchWriter(staged, frame.schema) as writer:
        writer.write(frame)
    settings = {"connection": "bulk", "object": "Opportunity", "api": api}
    settings |= manager.pop("settings", {})
    io_manager = SalesforceIOManager(
        connection=SalesforceConnection(login_url=sb.url, **CLIENT),
        error_root=str(folder / "lake"), **manager,
    )  # fmt: skip
    context = dg.build_output_context(
        asset_key=dg.AssetKey(["f", "records"]), run_id="run-1",
        definition_metadata={"flowbridge/settings": json.dumps(settings),
                             "flowbridge/write": how, "flowbridge/key": key},
    )  # fmt: skip
    io_manager.handle_output(context, writer.staged())
    return {k: getattr(v, "value", v) for k, v in context.get_logged_metadata().items()}


def rejected(folder: Path) -> pl.DataFrame:
    lake = Lake(folder / "lake")
    return lake.scan("f__rejected").collect() if "f__rejected" in lake.tables() else pl.DataFrame()


def live(sb) -> pl.DataFrame:
    return sb.frame("Opportunity").filter(~pl.col("IsDeleted")).sort(EXT)


def fresh(n: int, tag: str = "B", start: int = 0) -> pl.DataFrame:
    """n new Opportunities keyed by external id."""
    return pl.DataFrame(
        {
            EXT: [f"{tag}-{i:05d}" for i in range(start, start + n)],
            "Name": [f"Bulk deal {i}" for i in range(start, start + n)],
            "Amount": [1000.25 + i for i in range(start, start + n)],
            "StageName": [
                "Prospecting" if i % 2 else "Closed Won" for i in range(start, start + n)
            ],
            "CloseDate": [date(2025, 1, 1 + i % 28) for i in range(start, start + n)],
        },
        schema_overrides={"CloseDate": pl.Date},
    )


def held(sb, sent: pl.DataFrame) -> pl.DataFrame:
    return live(sb).filter(pl.col(EXT).is_in(sent[EXT].implode())).select(sent.columns)


# --- which API --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "settings", "bulk"),
    [
        (999, {}, False),  # AppFlow: fewer than 1,000 records through REST
        (1000, {}, True),  # 1,000 or more through Bulk API 2.0
        (10, {"bulk_threshold": 10}, True),
        (9, {"bulk_threshold": 10}, False),
        (1000, {"api": "rest"}, False),
        (3, {"api": "bulk"}, True),
    ],
)
def test_automatic_switches_to_one_bulk_job_at_the_threshold(own, tmp_path, rows, settings, bulk):
    own.reset_stats()
    api = settings.get("api", "automatic")
    sent = fresh(rows)
    meta = write(own, tmp_path, sent, api=api, settings={"bulk_threshold": 1000} | settings)
    stats = own.stats()
    assert (meta["rows_written"], meta["rows_created"]) == (rows, rows)
    if bulk:
        assert (stats["bulk_jobs"], stats["bulk_upload"], stats["collections_upsert"]) == (1, 1, 0)
        assert meta["destination"].endswith("(upsert, Bulk API 2.0)") and meta["batches"] == 1
    else:
        assert stats["bulk_jobs"] + stats["bulk_upload"] == 0
        assert stats["collections_upsert"] == -(-rows // 200) == meta["batches"]
    assert_frame_equal(held(own, sent), sent.sort(EXT))


# --- the same as sObject Collections --------------------------------------------------


def upsert_input(sb) -> pl.DataFrame:
    row = pl.int_range(pl.len())
    old = live(sb).head(6).select(FIELDS).with_columns(
        pl.when(row == 1).then(None).otherwise(pl.col("Name")).alias("Name"),  # refused
        pl.when(row == 2).then(None).otherwise(pl.col("Amount").fill_null(0) + 0.5).alias("Amount"),
    )  # fmt: skip
    new = fresh(6, "U").with_columns(
        pl.Series("Name", ['Comma, "quoted"\nand a new line', None, "x" * 121, "Zürich AG",
                           "Same", "Same"]),
        pl.Series(EXT, ["U-1", "U-2", "U-3", "U-4", "U-5", "U-5"]),  # the last two identical
        pl.Series("Amount", [1.0, 2.0, 3.0, 4.0, 5.0, 5.0]),
    )  # fmt: skip
    return pl.concat([old, new])


def insert_input(sb) -> pl.DataFrame:
    taken = live(sb)[EXT][0]
    return fresh(5, "I").with_columns(
        pl.Series(EXT, ["I-1", taken, "I-3", "I-4", "I-1"]),  # a duplicate of a record, of I-1
        pl.Series("StageName", ["Prospecting", "Prospecting", None, "Prospecting", "Prospecting"]),
    )  # fmt: skip


def update_input(sb) -> pl.DataFrame:
    ids = live(sb)["Id"].to_list()
    return pl.DataFrame({
        "Id": [ids[0], ids[1], "006Hs0000099999IAA", ids[3], ids[4]],
        "Amount": [7.0, None, 1.0, 9.0, 10.0],
        "Name": ["Renamed", "Kept", "Nobody", None, "y" * 200],
    })  # fmt: skip


def delete_input(sb) -> pl.DataFrame:
    ids = live(sb)["Id"].to_list()
    return pl.DataFrame({"Id": [ids[0], ids[1], ids[1], "bogus", "006Hs0000099999IAA"]})


@pytest.mark.parametrize(
    ("how", "key", "build"),
    [("upsert", EXT, upsert_input), ("insert", "", insert_input),
     ("update", "", update_input), ("delete", "", delete_input)],
)  # fmt: skip
def test_bulk_and_collections_leave_the_same_data_and_refuse_the_same_records(
    own, twin, tmp_path, how, key, build
):
    sent = build(own)
    assert sent.equals(build(twin))
    rest = write(own, tmp_path / "rest", sent, how, key, api="rest")
    bulk = write(twin, tmp_path / "bulk", sent, how, key, api="bulk")
    assert twin.stats()["bulk_jobs"] == 1 and own.stats()["bulk_jobs"] == 0
    counts = ("rows_written", "rows_created", "rows_refused_by_destination")
    assert [bulk[c] for c in counts] == [rest[c] for c in counts]
    assert rest["rows_refused_by_destination"] >= 2  # the inputs carry refusals
    assert_frame_equal(
        twin.frame("Opportunity").drop(STAMPS), own.frame("Opportunity").drop(STAMPS)
    )
    # The same records refused, in the same order, for the same reasons (codes and messages).
    assert_frame_equal(rejected(tmp_path / "bulk").drop(BOOKKEEPING),
                       rejected(tmp_path / "rest").drop(BOOKKEEPING))  # fmt: skip


# --- refusals, re-runs -------------------------------------------------------------------


def test_a_refused_record_lands_in_the_error_location_with_its_code_and_no_values(own, tmp_path):
    secret = "Alice Example alice@example.com"
    bad = pl.col(EXT) == "B-00002"
    sent = fresh(4).with_columns(
        pl.when(bad).then(None).otherwise(pl.col("StageName")).alias("StageName"),
        pl.when(bad).then(pl.lit(secret)).otherwise(pl.col("Name")).alias("Name"),
    )
    meta = write(own, tmp_path, sent)
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (3, 1)
    bad = rejected(tmp_path)
    assert bad[EXT].to_list() == ["B-00002"] and bad["Name"].to_list() == [secret]
    [why] = bad["_fb_reason"].to_list()
    assert (
        why
        == "REQUIRED_FIELD_MISSING: Required fields are missing: [StageName] (fields: StageName)"
    )
    assert secret not in why and "B-00002" not in why
    assert_frame_equal(held(own, sent), sent.filter(pl.col(EXT) != "B-00002"))


def test_values_salesforce_quotes_in_a_message_are_left_out():
    picklist = ("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Stage: bad value for restricted picklist "
                "field: Secret Stage:StageName --")  # fmt: skip
    assert bulk_reason(picklist, ["K-1", "Secret Stage"]) == (
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST: Stage: bad value for restricted picklist "
        "field: *** (fields: StageName)"
    )
    deserialize = ("INVALID_FIELD:Failed to deserialize field at col 3. Due to, '12-12' is not a "
                   "valid value for the type xsd:date:--")  # fmt: skip
    assert bulk_reason(deserialize, ["12-12", "Name"]) == (
        "INVALID_FIELD: Failed to deserialize field at col 3. Due to, '***' is not a valid value "
        "for the type xsd:date"
    )
    two = "A_CODE:first:X -- B_CODE:second:--"
    assert bulk_reason(two, []) == "A_CODE: first (fields: X); B_CODE: second"


def test_a_rerun_of_a_bulk_upsert_changes_nothing_and_creates_no_duplicates(own, tmp_path):
    sent = pl.concat([live(own).head(40).select(FIELDS).with_columns(pl.col("Amount") * 2),
                      fresh(60)])  # fmt: skip
    first = write(own, tmp_path, sent)
    assert (first["rows_written"], first["rows_created"]) == (100, 60)
    before = live(own).drop(STAMPS)
    again = write(own, tmp_path, sent)
    assert (again["rows_written"], again["rows_created"]) == (100, 0)
    assert_frame_equal(live(own).drop(STAMPS), before)
    assert own.frame("Opportunity").height == RECORDS + 60


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "path", "after", "jobs", "uploads"),
    [
        ("503", "/jobs/ingest/", 2, 1, 1),  # the first poll
        ("reset", "/jobs/ingest/", 2, 1, 1),  # the first poll, the connection dropped
        ("expire_token", "/jobs/ingest/", 3, 1, 1),  # the second poll
        ("503", "/jobs/ingest/", 1, 1, 1),  # UploadComplete: repeated
        ("429", "/batches", 0, 1, 2),  # the upload: never applied, so repeated
        ("expire_token", "/batches", 0, 1, 2),  # refused before it was read: repeated
        ("503", "/batches", 0, 2, 2),  # the upload may have landed: that job aborted, a new one
        ("503", "/jobs/ingest", 0, 1, 1),  # the job's creation: repeated
        ("malformed", "successfulResults", 0, 1, 1),  # a results file cut short: read again
    ],
)  # fmt: skip
def test_faults_mid_job_are_survived_with_exact_counts(
    own, tmp_path, fault, path, after, jobs, uploads
):
    sent = fresh(250)
    own.reset_stats()
    own.inject(fault, path_contains=path, after=after, retry_after=0.05)
    meta = write(own, tmp_path, sent)
    assert own.pending_faults() == [] and own.stats()["faults"][fault] == 1
    assert (meta["rows_written"], meta["rows_created"], meta["rows_refused_by_destination"]) == (
        250, 250, 0)  # fmt: skip
    assert own.stats()["bulk_upload"] == uploads
    states = [job.state for job in own.bulk.jobs.values()]
    assert states == ["Aborted"] * (jobs - 1) + ["JobComplete"]
    assert_frame_equal(held(own, sent), sent)


def test_a_batch_whose_csv_is_over_the_upload_limit_is_split_into_jobs(own, tmp_path, monkeypatch):
    monkeypatch.setattr(salesforce_bulk, "MAX_UPLOAD_BYTES", 4000)  # ~80 records of CSV
    sent = fresh(300)
    meta = write(own, tmp_path, sent)
    assert meta["batches"] == 1 and meta["rows_written"] == 300
    uploads = [len(job.upload.encode()) for job in own.bulk.jobs.values()]
    assert len(uploads) == 4 and max(uploads) <= 4000  # halved until each CSV fits
    assert_frame_equal(held(own, sent), sent)


# --- jobs that do not complete ------------------------------------------------------------


def test_a_job_that_fails_as_a_whole_loses_no_record(own, tmp_path):
    own.bulk.daily_records = 150  # the org's allocation runs out in the second job
    sent = fresh(250)
    meta = write(own, tmp_path, sent, bulk_batch_size=100)
    assert meta["batches"] == 3 and own.stats()["bulk_jobs"] == 3
    assert (meta["rows_written"], meta["rows_created"], meta["rows_refused_by_destination"]) == (
        150, 150, 100)  # fmt: skip
    assert [j.state for j in own.bulk.jobs.values()] == ["JobComplete", "Failed", "Failed"]
    bad = rejected(tmp_path)
    assert sorted(bad[EXT]) == sent[EXT][150:].to_list()
    jobs = list(own.bulk.jobs)
    for record, why in bad.select(EXT, "_fb_reason").iter_rows():
        job = jobs[1] if record < "B-00200" else jobs[2]
        assert why.startswith(f"NOT_PROCESSED: Bulk API 2.0 job {job} ended Failed before "
                              "processing this record: ExceededQuota : ")  # fmt: skip
        assert record not in why
    assert_frame_equal(held(own, sent), sent.head(150))


def test_a_job_still_running_at_the_deadline_is_aborted_and_its_records_refused(own, tmp_path):
    own.bulk.processing_polls = 10**9  # the org never gets to it
    sent = fresh(20)
    meta = write(own, tmp_path, sent, bulk_timeout_seconds=0.5)
    assert (meta["rows_written"], meta["rows_refused_by_destination"]) == (0, 20)
    [job] = own.bulk.jobs.values()
    assert job.state == "Aborted"
    assert rejected(tmp_path)["_fb_reason"].unique().to_list() == [
        f"NOT_PROCESSED: Bulk API 2.0 job {job.id} ended Aborted before processing this record: "
        "aborted after 0.5 s"
    ]
    assert held(own, sent).height == 0


def test_fields_salesforce_cannot_take_fail_before_any_job(own, tmp_path):
    stamped = live(own).head(3).select(EXT, "Amount", "CreatedDate")
    with pytest.raises(ConnectorError, match="Opportunity.CreatedDate is read-only"):
        write(own, tmp_path, stamped)
    listed = fresh(2).with_columns(pl.Series("Name", [["a", "b"], ["c"]]))
    with pytest.raises(ConnectorError, match="Opportunity.Name is a List.*join it"):
        write(own, tmp_path, listed)
    assert own.stats()["bulk_jobs"] == 0
