"""Where a deployment runs, read once inside the definitions function, never at import time.

LOCAL (default): the sandbox SaaS, the local lake; extracted data and rejected records stay in
local folders. AWS: the same flows, with extracted data staged in an S3 prefix under SSE-KMS
and a retention rule, and rejected records of non-S3 destinations in that bucket's `_errors/`.
AWS credentials and endpoints come from the standard chain (AWS_PROFILE, AWS_REGION,
AWS_ENDPOINT_URL...), as boto3 reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ENVIRONMENTS = ("LOCAL", "AWS")


@dataclass(frozen=True)
class S3Staging:
    bucket: str
    prefix: str
    kms_key_id: str | None  # None: the bucket's AWS-managed key (aws/s3)
    retention_days: int
    region_name: str

    @property
    def error_root(self) -> str:
        """Where rejected records of destinations without a bucket of their own go."""
        return f"s3://{self.bucket}/{self.prefix}/_errors"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Staging:
        uri = env.get("FLOWBRIDGE_STAGING_URI", "")
        if not uri.startswith("s3://") or len(uri) <= len("s3://"):
            raise ValueError(
                "FLOWBRIDGE_ENV=AWS needs FLOWBRIDGE_STAGING_URI=s3://bucket/prefix: where "
                f"extracted data is staged (got {uri!r})"
            )
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        days = env.get("FLOWBRIDGE_STAGING_RETENTION_DAYS", "7")
        if not days.isdigit() or int(days) < 1:
            raise ValueError(f"FLOWBRIDGE_STAGING_RETENTION_DAYS must be a whole number of days "
                             f"(1 or more), not {days!r}")  # fmt: skip
        return cls(
            bucket=bucket,
            prefix=prefix.strip("/") or "flowbridge-staging",
            kms_key_id=env.get("FLOWBRIDGE_STAGING_KMS_KEY") or None,
            retention_days=int(days),
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        )


@dataclass(frozen=True)
class Settings:
    environment: Literal["LOCAL", "AWS"]
    flows_dir: Path
    data_dir: Path
    s3_staging: S3Staging | None = None  # set in AWS

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def staging_dir(self) -> Path:
        """Local working copies of staged data (the only copy in LOCAL)."""
        return self.data_dir / "staging"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        name = env.get("FLOWBRIDGE_ENV", "LOCAL").upper()
        if name not in ENVIRONMENTS:
            raise ValueError(
                f"FLOWBRIDGE_ENV={name!r} is not one of {', '.join(ENVIRONMENTS)}; "
                "unset it to run locally"
            )
        return cls(
            environment="AWS" if name == "AWS" else "LOCAL",
            flows_dir=Path(env.get("FLOWBRIDGE_FLOWS_DIR", "flow_defs")).resolve(),
            data_dir=Path(env.get("FLOWBRIDGE_DATA_DIR", "data")).resolve(),
            s3_staging=S3Staging.from_env(env) if name == "AWS" else None,
        )


def env_file(flows_dir: Path) -> Path:
    """The project's `.env`, beside the flows folder: where `flowbridge oauth` stores refresh
    tokens, and what `dagster dev` reads variables from."""
    return flows_dir.parent / ".env"


def load_env_file(flows_dir: Path) -> None:
    """The project's `.env` into the environment, as `dagster dev` does for its processes; a
    variable already set wins (python-dotenv parses the file as Dagster's own loader does)."""
    from dotenv import load_dotenv

    load_dotenv(env_file(flows_dir), override=False)
