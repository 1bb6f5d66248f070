"""The AWS environment's staging area and error location: every staged dataset also goes to
an S3 prefix under SSE-KMS, kept for a number of days by a lifecycle rule, and is fetched back
when a step runs where the local copy is missing (another worker, a re-execution). Rejected
records of destinations without an S3 bucket of their own go to `<prefix>/_errors/<table>/`."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from flow_assets.connectors.aws import aws_client
from flow_assets.destinations.s3 import S3Writer, read_manifest
from flow_assets.destinations.staging import STAGED_COPY, Staged, StagingArea, replace_folder
from flow_assets.destinations.staging_crypto import ColumnCipher
from flow_assets.spec.models import S3Encryption, S3Settings

COPY_FILE_MB = 128  # staged copies are uploaded in files of about this size


class S3StagingArea(StagingArea):
    """A local working folder, and the same datasets in S3 under SSE-KMS."""

    bucket: str = Field(description="Bucket holding staged data.")
    prefix: str = Field("flowbridge-staging", description="Key prefix of staged data.")
    kms_key_id: str | None = Field(None, description="KMS key; the bucket's aws/s3 key if unset.")
    retention_days: int = Field(7, ge=1, description="Staged objects expire after this.")
    region_name: str = Field("us-east-1")

    def client(self) -> Any:
        return aws_client("s3", self.region_name)

    def settings(self, *parts: str) -> S3Settings:
        return S3Settings(
            connection="staging",
            bucket=self.bucket,
            prefix="/".join([self.prefix, *parts]),
            partitioning=["run_id"],
            file_size_mb=COPY_FILE_MB,
            encryption=S3Encryption(type="sse-kms", kms_key_id=self.kms_key_id),
        )

    def cipher(self) -> ColumnCipher:
        """Data keys wrapped by the staging KMS key (no key file on any worker); without one,
        the local master key (FLOWBRIDGE_STAGING_KEY)."""
        if not self.kms_key_id:
            return super().cipher()
        return ColumnCipher(kms_client=aws_client("kms", self.region_name),
                            kms_key_id=self.kms_key_id)  # fmt: skip

    def publish(self, staged: Staged, run_id: str, *parts: str) -> dict[str, Any]:
        """Copy a staged dataset to S3, encrypted, under the retention rule."""
        client = self.client()
        keep_for(client, self.bucket, self.prefix, self.retention_days)
        writer = S3Writer(client, self.settings(*parts), parts[0], run_id, datetime.now(UTC))
        manifest = writer.write(staged, "append", as_is=True).manifest
        return {STAGED_COPY: dg.MetadataValue.url(f"s3://{self.bucket}/{manifest}")}

    def restore(self, copy: str | None, *parts: str) -> None:
        """Bring a staged dataset back from its S3 copy into the local folder."""
        if not copy:
            return super().restore(copy, *parts)
        client = self.client()
        target = self.path(*parts)
        tmp = target.with_name(f".{target.name}.fetch")
        tmp.mkdir(parents=True, exist_ok=True)
        manifest = read_manifest(client, self.bucket, copy.removeprefix(f"s3://{self.bucket}/"))
        for item in manifest["files"]:  # names kept: `.enc.parquet` marks encrypted files
            client.download_file(self.bucket, item["key"], str(tmp / item["key"].rsplit("/")[-1]))
        replace_folder(tmp, target)


def keep_for(client: Any, bucket: str, prefix: str, days: int) -> None:
    """Make sure the bucket's lifecycle expires the prefix after `days`; other rules stay."""
    rule_id = f"flowbridge-staging-{prefix}"[:255]
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except client.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    ours = {
        "ID": rule_id,
        "Filter": {"Prefix": f"{prefix}/"},
        "Status": "Enabled",
        "Expiration": {"Days": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }
    if ours in rules:
        return
    others = [r for r in rules if r.get("ID") != rule_id]
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [*others, ours]}
    )


def publish_rejected(
    client: Any, error_root: str, table: str, staged: Staged, run_id: str, kms_key_id: str | None
) -> str:
    """Rejected records as Parquet under `<error_root>/<table>/year=/month=/day=/`, SSE-KMS,
    published with a manifest like any S3 write; returns where they went."""
    bucket, _, prefix = error_root.removeprefix("s3://").partition("/")
    settings = S3Settings(
        connection="errors", bucket=bucket, prefix=f"{prefix.strip('/')}/{table}",
        partitioning=["year", "month", "day"],
        encryption=S3Encryption(type="sse-kms", kms_key_id=kms_key_id),
    )  # fmt: skip
    result = S3Writer(client, settings, table, run_id, datetime.now(UTC)).write(staged, "append")
    return f"s3://{bucket}/{result.prefix}"


class S3ErrorIOManager(dg.ConfigurableIOManager):
    """Rejected records as Parquet (with the reason column) in the staging bucket's `_errors/`."""

    staging: S3StagingArea
    error_root: str = Field(description="s3://bucket/prefix under which rejected records go.")

    def handle_output(self, context: dg.OutputContext, obj: Staged) -> None:
        meta = context.definition_metadata or {}
        table = str(meta.get("flowbridge/table") or "__".join(context.asset_key.path))
        where = publish_rejected(
            self.staging.client(), self.error_root, table, obj, context.run_id,
            self.staging.kms_key_id,
        )  # fmt: skip
        context.add_output_metadata({"dagster/row_count": obj.rows, "destination": where})

    def load_input(self, context: dg.InputContext) -> Any:
        raise NotImplementedError("rejected records are read from S3 by people, not flows")
