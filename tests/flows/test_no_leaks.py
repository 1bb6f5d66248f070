"""No secret and no raw value of a masked field reaches logs, the event log or metadata."""

import io
import logging

import dagster as dg
import polars as pl
import psycopg
import pytest

from flow_assets.destinations.staging import StagingArea
from tests.conftest import (
    CLIENT_SECRET,
    EXAMPLE_BUCKET,
    add_postgres_warehouse,
    failure_message,
    live_opportunities,
    materialization,
    run_flow,
)

FLOW = "salesforce_big_opportunities"


def test_secrets_and_masked_values_stay_out_of_logs_and_events(
    project, instance, sf, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    sf.inject("expire_token", count=1, path_contains="/query")  # re-authentication is logged too
    result = run_flow(project, instance, FLOW)
    assert result.success
    events = "\n".join(dg.serialize_value(e) for e in instance.all_logs(result.run_id))
    captured = capfd.readouterr()
    everything = "\n".join([events, caplog.text, captured.out, captured.err])
    assert FLOW in events  # the scan does see the run's events

    assert CLIENT_SECRET not in everything
    emails = {e for e in live_opportunities(sf)["Email__c"].drop_nulls() if len(e) > 5}
    assert emails, "the sandbox should have emails to hide"
    leaked = [e for e in emails if e in everything or e.lower() in everything]
    assert not leaked, f"{len(leaked)} raw emails in logs or events"


# --- The masking guarantee, end to end: every example flow, every byte a run leaves. -------

MASKING_FLOWS = [
    "salesforce_big_opportunities",  # the lake
    "salesforce_opportunities_to_s3",  # S3, rejected records under _errors/
    "salesforce_opportunities_to_redshift",  # staged in S3, merged into the warehouse
]
STAGING_BUCKET = "flowbridge-leak-staging"


@pytest.fixture
def every_destination(project, aws, postgres):
    """AWS resources of the example flows on moto; the warehouse on PostgreSQL. Buckets keep
    versions, so what a run deleted (Redshift's staged files) is scanned too."""
    s3, kms = aws("s3"), aws("kms")
    for bucket in (EXAMPLE_BUCKET, STAGING_BUCKET):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    kms.create_alias(
        AliasName="alias/flowbridge", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"]
    )
    add_postgres_warehouse(project, postgres, "leak_warehouse", STAGING_BUCKET)
    to_redshift = project.flows_dir / "salesforce_opportunities_to_redshift.yaml"
    to_redshift.write_text(
        to_redshift.read_text().replace("connection: warehouse,", "connection: leak_warehouse,")
    )
    with psycopg.connect(host=postgres["host"], port=postgres["port"], user="postgres",
                         dbname="postgres", autocommit=True) as pg:  # fmt: skip
        pg.execute("DROP SCHEMA IF EXISTS sales CASCADE")
    return project, s3, postgres


def planted(sf) -> set[str]:
    """The raw values the example flows mask: the sandbox's emails, as written and as the
    email formatter would write them."""
    emails = {e for e in sf.frame("Opportunity")["Email__c"].drop_nulls() if len(e) > 5}
    assert len(emails) > 100
    return emails | {e.lower() for e in emails}


def text_of(name: str, body: bytes) -> str:
    """What a file says to someone without the staging key: Parquet decoded (its pages are
    compressed) column by column, as far as it can be read; anything else as text."""
    if not name.endswith(".parquet"):
        return body.decode("utf-8", "replace")
    readable = []
    for column in pl.read_parquet_schema(io.BytesIO(body)):
        try:
            readable.append(pl.read_parquet(io.BytesIO(body), columns=[column]).write_ndjson())
        except pl.exceptions.ComputeError:  # an encrypted column
            readable.append(body.decode("utf-8", "replace"))
    return "\n".join(readable)


def everything_written(project, s3, postgres, instance, run_ids, logs: str, staging: bool) -> dict:
    """Every place a run writes, as text by place: local files (the lake, and the staging
    area when asked), every version of every S3 object, the warehouse, the event log, logs."""
    places = {"logs": logs}
    for path in project.data_dir.rglob("*"):
        inside_staging = project.staging_dir in path.parents
        if path.is_file() and (staging or not inside_staging):
            places[str(path)] = text_of(path.name, path.read_bytes())
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
            body = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
            places[f"s3://{bucket}/{version['Key']}"] = text_of(version["Key"], body["Body"].read())
    with psycopg.connect(host=postgres["host"], port=postgres["port"], user="postgres",
                         dbname="postgres") as pg:  # fmt: skip
        places["warehouse"] = str(pg.execute("SELECT * FROM sales.opportunities").fetchall())
    places["event log"] = "\n".join(
        dg.serialize_value(e) for run_id in run_ids for e in instance.all_logs(run_id)
    )
    return places


def leaks(places: dict, values: set[str]) -> dict[str, int]:
    return {where: n for where, text in places.items() if (n := sum(v in text for v in values))}


def run_every_masking_flow(project, instance) -> list[str]:
    run_ids = []
    for flow in MASKING_FLOWS:
        result = run_flow(project, instance, flow)
        assert result.success, failure_message(result)
        meta = materialization(result, flow, "records")
        assert meta["records_read"] == (
            meta["records_loaded"] + meta["records_filtered"] + meta["records_rejected"]
        )
        assert meta["masked_fields"] == "Email__c"
        run_ids.append(result.run_id)
    return run_ids


def test_masked_values_are_stored_only_encrypted_in_staging(
    every_destination, instance, sf, caplog, capfd
):
    project, s3, postgres = every_destination
    caplog.set_level(logging.DEBUG)
    run_ids = run_every_masking_flow(project, instance)
    logs = caplog.text + "\n".join(capfd.readouterr())
    values = planted(sf)
    places = everything_written(project, s3, postgres, instance, run_ids, logs, staging=False)
    assert any(EXAMPLE_BUCKET in p for p in places) and "warehouse" in places
    assert leaks(places, values) == {}
    # The staging area holds the raw values, encrypted: unreadable without the key...
    staged = everything_written(project, s3, postgres, instance, run_ids, logs, staging=True)
    sides = list(project.staging_dir.rglob("extracted/*.sensitive.enc.parquet"))
    assert len(sides) == len(MASKING_FLOWS)  # one staged file each, its emails on the side
    assert leaks(staged, values) == {}
    # ...and there with it: the scan would have seen them.
    staging = StagingArea(root=str(project.staging_dir))
    decrypted = pl.concat(staging.read_batches(MASKING_FLOWS[0], "extracted")).write_ndjson()
    assert leaks({"decrypted": decrypted}, values)


def test_with_mask_at_source_no_raw_value_is_stored_anywhere(
    every_destination, instance, sf, caplog, capfd
):
    project, s3, postgres = every_destination
    caplog.set_level(logging.DEBUG)
    for flow in MASKING_FLOWS:
        path = project.flows_dir / f"{flow}.yaml"
        text = path.read_text().replace("  incremental:", "  mask_at_source: true\n  incremental:")
        # The demo flow checks emails before masking them; masked at the source, there is
        # nothing left to check, so that task goes.
        text = text.replace("  - format: {field: Email__c, as: email, on_invalid: quarantine}", "")
        path.write_text(text)
    run_ids = run_every_masking_flow(project, instance)
    logs = caplog.text + "\n".join(capfd.readouterr())
    places = everything_written(project, s3, postgres, instance, run_ids, logs, staging=True)
    assert any("extracted" in p for p in places)
    assert leaks(places, planted(sf)) == {}


def test_mask_at_source_refuses_a_task_that_reads_the_field_first(project, instance, sf):
    path = project.flows_dir / f"{FLOW}.yaml"
    path.write_text(
        path.read_text().replace("  incremental:", "  mask_at_source: true\n  incremental:")
    )
    result = run_flow(project, instance, FLOW)
    assert not result.success
    message = failure_message(result)
    assert "tasks[5].mask.field: an earlier task reads 'Email__c'" in message
    assert "tasks[4].format" in message


def test_aws_credentials_stay_out_of_logs_events_and_metadata(
    every_destination, instance, sf, caplog, capfd, monkeypatch
):
    """Delta writes hand the credentials to deltalake itself: they must go no further."""
    project, _, _ = every_destination
    secret = "fb-leak-check-Secret/Key+0123456789abcdef"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    caplog.set_level(logging.DEBUG)
    path = project.flows_dir / "salesforce_opportunities_to_s3.yaml"
    path.write_text(
        path.read_text()
        .replace("format: parquet", "format: delta")
        .replace("    partitioning: [year, month, day]\n", "")
    )
    run_ids = []
    for flow in ("salesforce_opportunities_to_s3", "salesforce_opportunities_to_redshift"):
        result = run_flow(project, instance, flow)
        assert result.success, failure_message(result)
        run_ids.append(result.run_id)
    events = "\n".join(
        dg.serialize_value(e) for run_id in run_ids for e in instance.all_logs(run_id)
    )
    everything = "\n".join([events, caplog.text, *capfd.readouterr()])
    assert "delta_version" in events  # the scan sees the delta write's metadata
    assert secret not in everything
