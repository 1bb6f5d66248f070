"""The S3 destination when S3 answers 503 SlowDown: retried while it passes; when it does not,
the run fails, leaving nothing of its records under the prefix and the cursor where it was."""

import io

import polars as pl
import pytest

from flow_assets.destinations.s3 import list_keys, published_files
from tests.aws_faults import FaultProxy, limit_attempts
from tests.conftest import (
    failure_message,
    live_opportunities,
    materialization,
    run_flow,
    stored_cursor,
)

FLOW = "salesforce_opportunities_to_s3"
BUCKET = "flowbridge-example-lake"


@pytest.fixture
def faults(s3_project, moto_endpoint, monkeypatch):
    """The example S3 flow's bucket and KMS key, reached by the flows through a FaultProxy."""
    proxy = FaultProxy(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    yield proxy
    proxy.close()


def test_slow_down_is_retried_and_every_record_lands_once(project, instance, sf, aws, faults):
    faults.slow_down(3)
    result = run_flow(project, instance, FLOW)
    assert result.success, failure_message(result)
    assert faults.throttled == 3

    s3 = aws("s3")
    files = published_files(s3, BUCKET, "salesforce/opportunities/")
    loaded = pl.concat(
        pl.read_parquet(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
        for key in files
    )
    valid = live_opportunities(sf).filter(pl.col("Amount").is_null() | (pl.col("Amount") >= 0))
    assert sorted(loaded["Id"]) == sorted(valid["Id"])
    meta = materialization(result, FLOW, "records")
    assert loaded.height == meta["records_loaded"] == meta["rows_written"]
    assert stored_cursor(instance, project, FLOW) is not None


@pytest.mark.parametrize(
    "keys",
    [
        "",  # every PutObject: the rejected records' file (under _errors/) fails first
        "^salesforce/",  # the records' files
        "^salesforce/.*/_manifest-",  # the records' manifest: files written, then removed
    ],
    ids=["every-put", "records", "records-manifest"],
)
def test_permanent_slow_down_fails_clearly_and_leaves_nothing(
    project, instance, sf, aws, faults, keys
):
    limit_attempts(project, 2)
    faults.slow_down(-1, keys)
    result = run_flow(project, instance, FLOW)
    assert not result.success
    assert "(SlowDown) when calling the PutObject operation" in failure_message(result)
    s3 = aws("s3")
    assert published_files(s3, BUCKET, "salesforce/") == []  # readers see nothing of the run
    assert list_keys(s3, BUCKET, "salesforce/") == []  # and no file is left behind
    assert stored_cursor(instance, project, FLOW) is None
