"""The S3 destination on a real moto server: formats, prefixes, SSE-KMS, manifests, modes."""

import io
import json
from datetime import UTC, datetime

import polars as pl
import pytest

from flow_assets.connectors.aws import AwsConnection
from flow_assets.destinations.delta import write_delta
from flow_assets.destinations.s3 import (
    MANIFEST,
    S3Writer,
    list_keys,
    published_files,
    resolve_kms_key,
)
from flow_assets.destinations.staging import ParquetBatchWriter, Staged
from flow_assets.spec.models import Destination, S3Settings
from tests.conftest import (
    failure_message,
    live_opportunities,
    materialization,
    run_flow,
    stored_cursor,
)

FLOW = "salesforce_opportunities_to_s3"
BUCKET = "flowbridge-example-lake"


def set_destination(project, **changes: str) -> None:
    path = project.flows_dir / f"{FLOW}.yaml"
    text = path.read_text()
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)


def read(s3, key: str, fmt: str) -> pl.DataFrame:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    reader = {"parquet": pl.read_parquet, "csv": pl.read_csv, "jsonl": pl.read_ndjson}[fmt]
    return reader(io.BytesIO(body))


def test_records_land_in_s3_encrypted_with_a_manifest(s3_project, instance, sf):
    project, s3, key_arn = s3_project
    result = run_flow(project, instance, FLOW)
    assert result.success, failure_message(result)
    meta = materialization(result, FLOW, "records")
    files = published_files(s3, BUCKET, "salesforce/opportunities/")
    assert len(files) == 1 and files[0].endswith(".parquet")
    assert "/year=" in files[0] and "/month=" in files[0] and "/day=" in files[0]
    loaded = read(s3, files[0], "parquet")

    truth = live_opportunities(sf)
    assert meta["records_read"] == truth.height
    assert (
        loaded.height
        == meta["records_loaded"]
        == truth.filter(pl.col("Amount").is_null() | (pl.col("Amount") >= 0)).height
    )
    assert loaded["Id"].is_unique().all()
    assert not set(loaded["Email__c"].drop_nulls()) & set(truth["Email__c"].drop_nulls())

    head = s3.head_object(Bucket=BUCKET, Key=files[0])
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_arn
    manifests = [k for k in list_keys(s3, BUCKET, "salesforce/") if MANIFEST in k]
    assert len(manifests) == 1  # the records' run; rejected records live under _errors/
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifests[0])["Body"].read())
    assert manifest["rows"] == loaded.height and manifest["run_id"] == result.run_id
    assert meta["destination"].startswith(f"s3://{BUCKET}/salesforce/opportunities/year=")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_csv_and_json_lines(s3_project, instance, sf, fmt):
    project, s3, _ = s3_project
    set_destination(project, **{"format: parquet": f"format: {fmt}"})
    result = run_flow(project, instance, FLOW)
    assert result.success, failure_message(result)
    files = published_files(s3, BUCKET, "salesforce/")
    assert files[0].endswith(f".{fmt}")
    loaded = read(s3, files[0], fmt)
    assert loaded.height == materialization(result, FLOW, "records")["records_loaded"]
    assert sorted(loaded["Id"]) == sorted(
        live_opportunities(sf).filter(pl.col("Amount").is_null() | (pl.col("Amount") >= 0))["Id"]
    )


def test_files_of_a_target_size_and_sse_s3(s3_project, instance, sf):
    project, s3, _ = s3_project
    set_destination(
        project,
        **{
            "format: parquet": "format: parquet\n    file_size_mb: 1",
            "{type: sse-kms, kms_key_id: alias/flowbridge}": "{type: sse-s3}",
            "partitioning: [year, month, day]": "partitioning: [run_id]",
        },
    )
    import flow_assets.destinations.staging as staging

    original, staging.ROW_GROUP_ROWS = staging.ROW_GROUP_ROWS, 500  # several staged files
    try:
        result = run_flow(project, instance, FLOW)
    finally:
        staging.ROW_GROUP_ROWS = original
    assert result.success, failure_message(result)
    files = published_files(s3, BUCKET, "salesforce/")
    assert all(f"/run_id={result.run_id}/" in f for f in files)
    assert len(files) == 1  # 3,000 small records stay under 1 MB: one file
    assert s3.head_object(Bucket=BUCKET, Key=files[0])["ServerSideEncryption"] == "AES256"


def test_append_keeps_runs_and_overwrite_replaces_the_partition(s3_project, instance, sf):
    project, s3, _ = s3_project
    full = {"flowbridge/full_refresh": "true"}
    first = run_flow(project, instance, FLOW, **full)
    second = run_flow(project, instance, FLOW, **full)
    assert first.success and second.success
    per_run = materialization(first, FLOW, "records")["records_loaded"]
    rows = sum(read(s3, k, "parquet").height for k in published_files(s3, BUCKET, "salesforce/"))
    assert rows == 2 * per_run

    set_destination(project, **{"write: append": "write: overwrite"})
    third = run_flow(project, instance, FLOW, **full)
    assert third.success
    files = published_files(s3, BUCKET, "salesforce/")
    assert sum(read(s3, k, "parquet").height for k in files) == per_run
    assert len([k for k in list_keys(s3, BUCKET, "salesforce/") if MANIFEST in k]) == 1


def test_missing_bucket_fails_clearly_and_keeps_the_cursor(s3_project, instance, sf):
    project, s3, _ = s3_project
    set_destination(project, **{"bucket: flowbridge-example-lake": "bucket: no-such-bucket"})
    result = run_flow(project, instance, FLOW)
    assert not result.success
    assert "NoSuchBucket" in failure_message(result)
    assert stored_cursor(instance, project, FLOW) is None


def test_files_are_grouped_to_about_the_target_size(tmp_path):
    import os

    from flow_assets.destinations.s3 import S3Writer
    from flow_assets.spec.models import S3Settings

    for n in range(4):  # incompressible: each file is about 0.4 MB
        pl.DataFrame({"x": [os.urandom(4000).hex() for _ in range(50)]}).write_parquet(
            tmp_path / f"part-{n:05d}.parquet", compression="uncompressed"
        )
    settings = S3Settings(connection="a", bucket="bucket-1", file_size_mb=1)
    now = datetime.now(UTC)
    writer = S3Writer(None, settings, "f", "run", now)
    groups = writer._groups(Staged(tmp_path, 200, 0))
    assert [len(g) for g in groups] == [3, 1]
    one = S3Writer(None, settings.model_copy(update={"file_size_mb": None}), "f", "run", now)
    assert [len(g) for g in one._groups(Staged(tmp_path, 200, 0))] == [4]


def test_missing_kms_key_fails_before_anything_is_written(s3_project, instance, sf):
    project, s3, _ = s3_project
    set_destination(project, **{"alias/flowbridge": "alias/nope"})
    result = run_flow(project, instance, FLOW)
    assert not result.success
    assert "KMS key 'alias/nope' not found" in failure_message(result)
    assert list_keys(s3, BUCKET, "") == []


def test_glue_table_matches_the_parquet_schema(s3_project, instance, sf):
    project, s3, _ = s3_project
    set_destination(
        project,
        **{
            "    format: parquet\n": "    format: parquet\n    glue: {database: sales, table: opportunities}\n"
        },
    )
    result = run_flow(project, instance, FLOW)
    assert result.success, failure_message(result)
    glue = __import__("boto3").client(
        "glue", region_name="us-east-1", endpoint_url=s3.meta.endpoint_url
    )
    table = glue.get_table(DatabaseName="sales", Name="opportunities")["Table"]
    sd = table["StorageDescriptor"]
    files = published_files(s3, BUCKET, "salesforce/")
    parquet = read(s3, files[0], "parquet")
    hive = {"String": "string", "Float64": "double", "Date": "date", "Datetime": "timestamp"}
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
        (name, hive[dtype.base_type().__name__]) for name, dtype in parquet.schema.items()
    ]
    assert sd["Location"] == f"s3://{BUCKET}/salesforce/opportunities/"
    assert sd["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert [k["Name"] for k in table["PartitionKeys"]] == ["year", "month", "day"]
    partitions = glue.get_partitions(DatabaseName="sales", TableName="opportunities")["Partitions"]
    assert len(partitions) == 1
    assert files[0].startswith(
        partitions[0]["StorageDescriptor"]["Location"].split(f"{BUCKET}/")[1]
    )
    assert materialization(result, FLOW, "records")["glue_table"] == "sales.opportunities"


def test_rejected_records_go_to_the_flows_error_prefix(s3_project, instance, sf):
    project, s3, key_arn = s3_project
    result = run_flow(project, instance, FLOW)
    assert result.success, failure_message(result)
    rejected_count = materialization(result, FLOW, "records")["records_rejected"]
    assert rejected_count > 0  # the sandbox plants negative amounts
    files = published_files(s3, BUCKET, "_errors/salesforce/opportunities/")
    rejected = pl.concat([read(s3, k, "parquet") for k in files])
    assert rejected.height == rejected_count
    assert set(rejected["_fb_reason"]) == {"amount_usd: non_negative"}
    assert (rejected["amount_usd"] < 0).all()
    assert s3.head_object(Bucket=BUCKET, Key=files[0])["SSEKMSKeyId"] == key_arn
    # Readers of the records do not see the error files.
    records = published_files(s3, BUCKET, "salesforce/")
    assert not [k for k in records if "_errors" in k]


def staged(tmp_path, name: str, frame: pl.DataFrame) -> Staged:
    with ParquetBatchWriter(tmp_path / name, frame.schema) as writer:
        writer.write(frame)
    return writer.staged()


def upsert_settings(fmt: str) -> S3Settings:
    return S3Settings(
        connection="aws_default", bucket=BUCKET, prefix="accounts", format=fmt,
        encryption={"type": "sse-kms", "kms_key_id": "alias/flowbridge"},
    )  # fmt: skip


def test_upsert_merges_by_key_and_swaps_in_one_step(s3_project, tmp_path):
    _, s3, key_arn = s3_project
    settings = resolve_kms_key(upsert_settings("parquet"), AwsConnection(
        endpoint_url=s3.meta.endpoint_url))  # fmt: skip
    first = pl.DataFrame({"Id": ["a", "b", "c"], "Amount": [1.0, 2.0, 3.0]})
    # A later run: b changed (twice: its last record wins), d is new, a new column appears.
    second = pl.DataFrame(
        {"Id": ["b", "d", "b"], "Amount": [20.0, 40.0, 21.0], "Stage": ["won", "new", "lost"]}
    )
    at = datetime.now(UTC)
    S3Writer(s3, settings, "f", "run-1", at).write(staged(tmp_path, "1", first), "upsert", ["Id"])
    old_files = published_files(s3, BUCKET, "accounts/")
    result = S3Writer(s3, settings, "f", "run-2", at).write(
        staged(tmp_path, "2", second), "upsert", ["Id"]
    )
    files = published_files(s3, BUCKET, "accounts/")
    table = pl.concat([read(s3, k, "parquet") for k in files], how="vertical").sort("Id")
    assert table.to_dicts() == [
        {"Id": "a", "Amount": 1.0, "Stage": None},
        {"Id": "b", "Amount": 21.0, "Stage": "lost"},
        {"Id": "c", "Amount": 3.0, "Stage": None},
        {"Id": "d", "Amount": 40.0, "Stage": "new"},
    ]
    assert result.rows == 4
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=result.manifest)["Body"].read())
    assert manifest["replaces"] == ["accounts/_manifest-run-1.json"]
    # The replaced run is gone once the new one is published; what is left is encrypted.
    assert set(list_keys(s3, BUCKET, "accounts/")) == {*files, result.manifest}
    assert not set(old_files) & set(files)
    assert {s3.head_object(Bucket=BUCKET, Key=k)["SSEKMSKeyId"] for k in files} == {key_arn}


def test_a_replaced_manifest_left_behind_stays_replaced(s3_project, tmp_path):
    """A clean-up cut short leaves a replaced manifest; readers and later runs ignore it."""
    _, s3, _ = s3_project
    settings = upsert_settings("parquet").model_copy(update={"encryption": None})
    at = datetime.now(UTC)
    rows = pl.DataFrame({"Id": ["a"], "Amount": [1.0]})
    S3Writer(s3, settings, "f", "run-1", at).write(staged(tmp_path, "1", rows), "upsert", ["Id"])
    interrupted = S3Writer(s3, settings, "f", "run-2", at)
    interrupted._remove = lambda manifests: None  # the process died before cleaning up
    interrupted.write(staged(tmp_path, "2", rows), "upsert", ["Id"])
    assert len(published_files(s3, BUCKET, "accounts/")) == 1
    S3Writer(s3, settings, "f", "run-3", at).write(staged(tmp_path, "3", rows), "upsert", ["Id"])
    files = published_files(s3, BUCKET, "accounts/")
    assert pl.concat([read(s3, k, "parquet") for k in files]).height == 1
    assert [k for k in list_keys(s3, BUCKET, "accounts/") if MANIFEST in k] == [
        "accounts/_manifest-run-3.json"
    ]


def test_upsert_refuses_a_changed_column_type(s3_project, tmp_path):
    _, s3, _ = s3_project
    settings = upsert_settings("parquet").model_copy(update={"encryption": None})
    at = datetime.now(UTC)
    first = pl.DataFrame({"Id": ["a"], "Amount": [1.0]})
    S3Writer(s3, settings, "f", "run-1", at).write(staged(tmp_path, "1", first), "upsert", ["Id"])
    second = pl.DataFrame({"Id": ["a"], "Amount": ["one"]})
    with pytest.raises(ValueError, match="column 'Amount' was written as Float64 and is now"):
        S3Writer(s3, settings, "f", "run-2", at).write(
            staged(tmp_path, "2", second), "upsert", ["Id"]
        )
    assert len(published_files(s3, BUCKET, "accounts/")) == 1  # the table is as it was


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
def test_flow_upserts_into_s3_twice_without_duplicates(s3_project, instance, sf, fmt):
    project, s3, key_arn = s3_project
    set_destination(
        project,
        **{
            "write: append": "write: upsert\n  key: [Id]",
            "format: parquet": f"format: {fmt}",
            "    partitioning: [year, month, day]\n": "",
        },
    )
    full = {"flowbridge/full_refresh": "true"}
    first = run_flow(project, instance, FLOW, **full)
    second = run_flow(project, instance, FLOW, **full)
    assert first.success and second.success, failure_message(second)
    meta = materialization(second, FLOW, "records")
    if fmt == "delta":
        loaded = pl.read_delta(
            f"s3://{BUCKET}/salesforce/opportunities",
            storage_options=AwsConnection(endpoint_url=s3.meta.endpoint_url).storage_options(),
        )
        data = [k for k in list_keys(s3, BUCKET, "salesforce/") if k.endswith(".parquet")]
        assert meta["rows_updated"] == meta["records_loaded"] and meta["rows_inserted"] == 0
    else:
        data = published_files(s3, BUCKET, "salesforce/")
        loaded = pl.concat([read(s3, k, "parquet") for k in data])
    truth = live_opportunities(sf).filter(pl.col("Amount").is_null() | (pl.col("Amount") >= 0))
    assert loaded["Id"].is_unique().all()
    assert sorted(loaded["Id"]) == sorted(truth["Id"])
    assert meta["dagster/row_count"] == truth.height
    assert not set(loaded["Email__c"].drop_nulls()) & set(truth["Email__c"].drop_nulls())
    assert {s3.head_object(Bucket=BUCKET, Key=k)["SSEKMSKeyId"] for k in data} == {key_arn}


def test_delta_merge_changes_values_and_adds_columns(s3_project, tmp_path):
    _, s3, _ = s3_project
    connection = AwsConnection(endpoint_url=s3.meta.endpoint_url)
    settings = upsert_settings("delta").model_copy(update={"encryption": None})
    first = pl.DataFrame({"Id": ["a", "b"], "Amount": [1.0, 2.0]})
    second = pl.DataFrame({"Id": ["b", "c", "b"], "Amount": [20.0, 30.0, 21.0], "Stage": ["x"] * 3})
    write_delta(staged(tmp_path, "1", first), settings, "f", connection, "upsert", ["Id"])
    meta = write_delta(staged(tmp_path, "2", second), settings, "f", connection, "upsert", ["Id"])
    table = pl.read_delta(f"s3://{BUCKET}/accounts", storage_options=connection.storage_options())
    assert table.sort("Id").to_dicts() == [
        {"Id": "a", "Amount": 1.0, "Stage": None},
        {"Id": "b", "Amount": 21.0, "Stage": "x"},
        {"Id": "c", "Amount": 30.0, "Stage": "x"},
    ]
    assert (meta["rows_inserted"], meta["rows_updated"], meta["delta_version"]) == (1, 1, 1)
    assert meta["dagster/row_count"] == 3


def test_upsert_settings_are_checked_in_the_flow_file():
    base = {"connection": "aws_default", "bucket": BUCKET}
    with pytest.raises(ValueError, match="needs format parquet or delta, not csv"):
        Destination(connector="s3", write="upsert", key=["Id"], s3={**base, "format": "csv"})
    with pytest.raises(ValueError, match="one table under the prefix: remove partitioning"):
        Destination(
            connector="s3", write="upsert", key=["Id"], s3={**base, "partitioning": ["day"]}
        )
    with pytest.raises(ValueError, match="format delta keeps one Delta table.*remove glue"):
        S3Settings(**base, format="delta", glue={"database": "sales"})
