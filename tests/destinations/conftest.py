"""Fixtures shared by the destination tests."""

import pytest

EXAMPLE_BUCKET = "flowbridge-example-lake"  # the bucket of flow_defs/salesforce_opportunities_to_s3


@pytest.fixture
def s3_project(project, aws):
    """The example S3 flow's bucket and KMS key (alias/flowbridge) on moto: (project, s3, key ARN)."""
    s3, kms = aws("s3"), aws("kms")
    s3.create_bucket(Bucket=EXAMPLE_BUCKET)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/flowbridge", TargetKeyId=key_id)
    return project, s3, kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
