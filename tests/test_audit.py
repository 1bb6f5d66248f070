"""The audit log: one record per run of a flow, success or failure, whoever started it."""

import json
import logging

import dagster as dg
import polars as pl
import pytest

from flow_assets.audit import TABLE, error_text, read_runs, trigger_of
from flow_assets.cli import main
from flow_assets.definitions import build_definitions
from flow_assets.destinations.lake import Lake
from flow_assets.runner import QUIET
from flow_assets.spec.errors import did_you_mean
from tests.conftest import (
    CLIENT_SECRET,
    failure_message,
    live_opportunities,
    materialization,
    run_flow,
)

FLOW = "salesforce_big_opportunities"
S3_FLOW = "salesforce_opportunities_to_s3"
BUCKET = "flowbridge-example-lake"
COUNTS = ["records_read", "records_filtered", "records_rejected", "records_loaded"]


def records(project, flow: str = FLOW) -> list[dict]:
    return read_runs(Lake(project.lake_dir), flow).to_dicts()


def test_a_successful_run_is_recorded(project, instance, sf):
    result = run_flow(project, instance, FLOW, **{"dagster/schedule_name": f"{FLOW}_schedule"})
    assert result.success, failure_message(result)
    meta = materialization(result, FLOW, "records")
    rejected = materialization(result, FLOW, "rejected")

    [record] = records(project)
    assert record["run_id"] == result.run_id and record["job"] == f"{FLOW}_job"
    assert record["status"] == "SUCCESS" and record["error"] is None
    assert (record["trigger"], record["started_by"]) == ("schedule", f"{FLOW}_schedule")
    assert {name: record[name] for name in COUNTS} == {name: meta[name] for name in COUNTS}
    assert record["records_read"] == live_opportunities(sf).filter(pl.col("Amount") > 10_000).height
    assert record["records_read"] == (
        record["records_loaded"] + record["records_filtered"] + record["records_rejected"]
    )
    assert record["records_rejected"] > 0  # the sandbox plants bad emails
    assert record["masked_fields"] == ["Email__c"]
    assert record["destinations"] == [meta["destination"], rejected["destination"]]
    run = instance.get_run_record_by_id(result.run_id)
    assert record["started_at"].timestamp() == pytest.approx(run.start_time, abs=0.001)
    assert record["started_at"] < record["ended_at"]


def test_failed_runs_are_recorded_with_their_error(project, instance, sf, monkeypatch):
    # The destination write fails: the lake's table has amount_usd as text.
    lake = Lake(project.lake_dir)
    lake.write(FLOW, pl.LazyFrame({"Id": ["x"], "amount_usd": ["not a number"]}))
    write_failed = run_flow(project, instance, FLOW)
    assert not write_failed.success
    assert "column 'amount_usd'" in failure_message(write_failed)

    # The extract fails: the source refuses the credentials.
    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", "wrong-secret")
    auth_failed = run_flow(project, instance, FLOW)
    assert not auth_failed.success

    newest, oldest = records(project)
    assert (newest["run_id"], oldest["run_id"]) == (auth_failed.run_id, write_failed.run_id)
    assert oldest["status"] == newest["status"] == "FAILURE"
    assert "lake table 'salesforce_big_opportunities': column 'amount_usd'" in oldest["error"]
    truth = live_opportunities(sf).filter(pl.col("Amount") > 10_000)
    assert oldest["records_read"] == truth.height
    assert oldest["records_rejected"] > 0 and oldest["records_filtered"] >= 0
    assert oldest["records_loaded"] is None  # the write did not commit: nothing confirmed
    assert oldest["destinations"] == [  # the rejected records did land
        materialization(write_failed, FLOW, "rejected")["destination"]
    ]

    assert "authentication failed" in newest["error"]
    assert "wrong-secret" not in newest["error"] and CLIENT_SECRET not in newest["error"]
    assert all(newest[name] is None for name in COUNTS)  # nothing was read
    assert newest["destinations"] == []


def test_a_ui_materialization_is_recorded(project, instance, sf):
    """The UI's "Materialize" runs the implicit asset job, not the flow's job."""
    defs = build_definitions(project)
    job = defs.resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey([FLOW, name]) for name in ("extracted", "records", "rejected")]
    result = job.execute_in_process(
        instance=instance, asset_selection=keys, raise_on_error=False, run_config=QUIET,
        tags={"dagster/from_ui": "true", "user": "ada@example.com"},
    )  # fmt: skip
    assert result.success, failure_message(result)
    [record] = records(project)
    assert record["job"] == job.name and record["run_id"] == result.run_id
    assert (record["trigger"], record["user"], record["status"]) == (
        "ui", "ada@example.com", "SUCCESS"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"dagster/schedule_name": "daily", "dagster/from_ui": "true"}, ("schedule", "daily")),
        ({"dagster/sensor_name": "on_change"}, ("sensor", "on_change")),
        ({"dagster/backfill": "abcdefgh", "user": "ada"}, ("backfill", "abcdefgh")),
        ({"flowbridge/trigger": "cli"}, ("cli", None)),
        ({"dagster/from_ui": "true", "user": "ada"}, ("ui", None)),
        ({}, ("api", None)),
    ],
)
def test_trigger_comes_from_the_run_tags(tags, expected):
    assert trigger_of(tags) == expected


def test_error_text_is_first_lines_capped_without_polars_samples():
    many = dg.Failure("\n".join(f"line {i}" for i in range(20)))
    assert error_text(many) == "\n".join(f"line {i}" for i in range(5))
    assert len(error_text(ValueError("x" * 5000))) == 1000
    try:
        pl.DataFrame({"Email__c": ["ada@example.com"]}).select(pl.col("Email__c").cast(pl.Int64))
    except pl.exceptions.PolarsError as exc:
        assert "ada@example.com" in str(exc)  # Polars names sample values...
        assert "ada@example.com" not in error_text(exc)  # ...the record does not
        assert "failed in column 'Email__c'" in error_text(exc)
    assert error_text(None) is None


def audit_objects(s3) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="_audit/")
    return [item["Key"] for item in listed.get("Contents", [])]


def test_an_s3_flow_leaves_an_encrypted_copy_in_its_bucket(s3_project, instance, sf):
    project, s3, key_arn = s3_project
    result = run_flow(project, instance, S3_FLOW)
    assert result.success, failure_message(result)

    [key] = audit_objects(s3)
    assert key == f"_audit/salesforce/opportunities/{S3_FLOW}-{result.run_id}.jsonl"
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)
    [line] = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()
    copy = json.loads(line)
    [record] = records(project, S3_FLOW)
    meta = materialization(result, S3_FLOW, "records")
    assert copy["run_id"] == record["run_id"] == result.run_id
    assert copy["status"] == record["status"] == "SUCCESS"
    assert {n: copy[n] for n in COUNTS} == {n: record[n] for n in COUNTS}
    assert copy["records_loaded"] == meta["records_loaded"]
    assert copy["destinations"][0] == meta["destination"] and meta["destination"].startswith(
        f"s3://{BUCKET}/salesforce/opportunities/"
    )


def test_a_failed_audit_write_is_a_warning_not_a_failure(s3_project, instance, sf):
    project, s3, _ = s3_project
    project.lake_dir.mkdir(parents=True)
    (project.lake_dir / "lake.duckdb").mkdir()  # DuckDB cannot open a folder: the lake is shut
    result = run_flow(project, instance, S3_FLOW)
    assert result.success, failure_message(result)

    warnings = [
        e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING
    ]
    assert any(f"audit record of run {result.run_id} not written to" in w for w in warnings)
    [key] = audit_objects(s3)  # the other copy is still written
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["status"] == "SUCCESS"


def test_runs_prints_the_history_newest_first(project, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWBRIDGE_FLOWS_DIR", str(project.flows_dir))
    monkeypatch.setenv("FLOWBRIDGE_DATA_DIR", str(project.data_dir))
    assert main(["run", FLOW]) == 0
    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", "nope")
    assert main(["run", FLOW, "--full-refresh"]) == 1
    capsys.readouterr()
    failed, succeeded = records(project)

    assert main(["runs", FLOW]) == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == ["started", "(UTC)", "duration", "status", "read", "filtered",
                              "loaded", "rejected", "trigger", "run", "id", "error"]  # fmt: skip
    assert first.split()[3:5] == ["FAILURE", "-"] and failed["run_id"] in first
    assert "authentication failed" in first and "nope" not in first
    counts = [str(succeeded[n]) for n in ("records_read", "records_filtered", "records_loaded",
                                          "records_rejected")]  # fmt: skip
    assert second.split()[3:10] == ["SUCCESS", *counts, "cli", succeeded["run_id"]]

    assert main(["runs", FLOW, "--limit", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2

    assert main(["runs", "salesforce_big_opportunitie"]) == 1
    err = capsys.readouterr().err
    assert "no runs of flow 'salesforce_big_opportunitie'" in err
    assert did_you_mean("salesforce_big_opportunitie", [FLOW]) in err


def test_no_masked_value_reaches_the_audit_log(project, instance, sf):
    assert run_flow(project, instance, FLOW).success
    lake = Lake(project.lake_dir)
    # The next write fails, on the masked field: the table now has it as a number.
    lake.write(FLOW, pl.LazyFrame({"Id": ["x"], "Email__c": [1]}), "overwrite")
    assert not run_flow(project, instance, FLOW, **{"flowbridge/full_refresh": "true"}).success

    audit = lake.scan(TABLE).sort("started_at").collect()
    assert audit["status"].to_list() == ["SUCCESS", "FAILURE"]
    text = audit.write_ndjson()
    assert "Email__c" in text  # the masked field's name is recorded, and the scan sees it
    emails = {e for e in sf.frame("Opportunity")["Email__c"].drop_nulls() if len(e) > 5}
    assert emails, "the sandbox should have emails to hide"
    leaked = [e for e in emails if e in text or e.lower() in text]
    assert not leaked, f"{len(leaked)} raw emails in the audit log"
