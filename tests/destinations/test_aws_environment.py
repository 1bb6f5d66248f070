"""FLOWBRIDGE_ENV=AWS on a real moto server: extracted data staged in S3 under SSE-KMS with a
retention rule, rejected records in the staging bucket's error prefix, and a step that runs
without the local copy fetching it back from S3."""

import dataclasses
import io
import shutil

import dagster as dg
import polars as pl
import pytest

from flow_assets.definitions import build_definitions, staging_and_errors
from flow_assets.destinations.s3 import list_keys, published_files
from flow_assets.environment import S3Staging, Settings
from flow_assets.runner import QUIET
from tests.conftest import failure_message, materialization, run_flow

FLOW = "salesforce_big_opportunities"
BUCKET = "flowbridge-staging-test"


@pytest.fixture
def aws_project(project, aws):
    s3, kms = aws("s3"), aws("kms")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_lifecycle_configuration(  # somebody else's rule, which must survive
        Bucket=BUCKET,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
                 "Expiration": {"Days": 30}}
            ]
        },
    )  # fmt: skip
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/staging", TargetKeyId=key["KeyId"])
    staging = S3Staging(
        bucket=BUCKET, prefix="fb", kms_key_id=key["Arn"], retention_days=3,
        region_name="us-east-1",
    )  # fmt: skip
    settings = dataclasses.replace(project, environment="AWS", s3_staging=staging)
    return settings, s3, key["Arn"]


def read_all(s3, prefix: str) -> pl.DataFrame:
    files = published_files(s3, BUCKET, prefix)
    assert files, f"nothing published under {prefix}"
    bodies = [s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in files]
    return pl.concat(pl.read_parquet(io.BytesIO(body)) for body in bodies)


def test_staged_data_and_rejected_records_live_in_s3(aws_project, instance, sf, tmp_path):
    settings, s3, key_arn = aws_project
    result = run_flow(settings, instance, FLOW)
    assert result.success, failure_message(result)
    meta = materialization(result, FLOW, "records")
    extracted = materialization(result, FLOW, "extracted")

    staging, _ = staging_and_errors(settings)
    prefix = f"fb/{FLOW}/extracted/run_id={result.run_id}/"
    # Raw emails (masked later) are encrypted with data keys wrapped by the KMS key.
    copies = published_files(s3, BUCKET, prefix)
    sides = [k for k in copies if k.endswith(".sensitive.enc.parquet")]
    assert len(sides) == 1 and len(copies) == 2
    with pytest.raises(pl.exceptions.ComputeError):  # without the key
        pl.read_parquet(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=sides[0])["Body"].read()))
    side = tmp_path / "side.enc.parquet"
    side.write_bytes(s3.get_object(Bucket=BUCKET, Key=sides[0])["Body"].read())
    assert staging.cipher().read(side)["Email__c"].drop_nulls().len() > 0  # through KMS
    staged = pl.concat(staging.read_batches(FLOW, "extracted"))
    assert staged.height == meta["records_read"] > 0
    shutil.rmtree(settings.staging_dir)  # what a worker without the local copy fetches
    staging.restore(extracted["staged_copy"], FLOW, "extracted")
    assert pl.concat(staging.read_batches(FLOW, "extracted")).sort("Id").equals(staged.sort("Id"))
    assert extracted["staged_copy"].startswith(f"s3://{BUCKET}/fb/{FLOW}/extracted/")

    rejected = read_all(s3, f"fb/_errors/{FLOW}__rejected/")
    assert rejected.height == meta["records_rejected"] > 0
    assert rejected["_fb_reason"].null_count() == 0
    keys = list_keys(s3, BUCKET, "fb/")
    assert {s3.head_object(Bucket=BUCKET, Key=k)["SSEKMSKeyId"] for k in keys} == {key_arn}
    assert not (settings.lake_dir / f"{FLOW}__rejected").exists()  # not in the local lake

    rules = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert {r["ID"]: r["Expiration"]["Days"] for r in rules} == {
        "logs": 30,
        "flowbridge-staging-fb": 3,
    }
    assert [r["Filter"]["Prefix"] for r in rules if r["ID"] != "logs"] == ["fb/"]


def test_a_step_without_the_local_copy_fetches_it_from_s3(aws_project, instance, sf):
    settings, s3, _ = aws_project
    defs = build_definitions(settings)
    extract = dg.AssetSelection.assets(dg.AssetKey([FLOW, "extracted"]))
    first = (
        defs.resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection=set(extract.resolve(defs.resolve_asset_graph())))
        .execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False)
    )
    assert first.success, failure_message(first)
    read = materialization(first, FLOW, "extracted")["dagster/row_count"]

    shutil.rmtree(settings.staging_dir)  # the next step runs on another worker
    rest = dg.AssetSelection.groups(FLOW) - extract
    second = (
        defs.resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection=set(rest.resolve(defs.resolve_asset_graph())))
        .execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False)
    )
    assert second.success, failure_message(second)
    assert materialization(second, FLOW, "records")["records_read"] == read


def test_the_aws_environment_needs_a_staging_location():
    with pytest.raises(ValueError, match="FLOWBRIDGE_ENV=AWS needs FLOWBRIDGE_STAGING_URI"):
        Settings.from_env({"FLOWBRIDGE_ENV": "aws"})
    with pytest.raises(ValueError, match="RETENTION_DAYS must be a whole number"):
        Settings.from_env({"FLOWBRIDGE_ENV": "AWS", "FLOWBRIDGE_STAGING_URI": "s3://b/p",
                           "FLOWBRIDGE_STAGING_RETENTION_DAYS": "soon"})  # fmt: skip
    settings = Settings.from_env(
        {"FLOWBRIDGE_ENV": "AWS", "FLOWBRIDGE_STAGING_URI": "s3://bkt/stage/",
         "FLOWBRIDGE_STAGING_KMS_KEY": "alias/k", "AWS_REGION": "eu-west-1"}
    )  # fmt: skip
    assert settings.s3_staging == S3Staging("bkt", "stage", "alias/k", 7, "eu-west-1")
    assert Settings.from_env({}).s3_staging is None
