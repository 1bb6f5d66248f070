"""A Redshift warehouse connection: the Redshift Data API (serverless workgroup or cluster), or
the PostgreSQL wire protocol (`mode: postgres`: a Redshift endpoint reached directly, or
PostgreSQL itself, the stand-in the tests use). No credential is written in a file."""

from typing import ClassVar, Literal

import dagster as dg
from pydantic import Field


class RedshiftConnection(dg.ConfigurableResource):
    mode: Literal["data_api", "postgres"] = Field("data_api", description="How SQL is sent.")
    database: str = Field("dev")
    workgroup_name: str | None = Field(None, description="Redshift Serverless (data_api).")
    cluster_identifier: str | None = Field(None, description="A provisioned cluster (data_api).")
    db_user: str | None = Field(None, description="For a cluster with temporary credentials.")
    secret_arn: str | None = Field(None, description="Secrets Manager secret (data_api).")
    region_name: str = Field("us-east-1")
    endpoint_url: str | None = Field(None, description="Override of the Data API endpoint.")
    host: str | None = Field(None, description="For mode postgres.")
    port: int = Field(5439)
    user: str | None = Field(None)
    password: str | None = Field(None, description="For mode postgres (an EnvVar).")
    staging_connection: str = Field(description="The aws connection COPY stages files through.")
    staging_bucket: str = Field(description="Bucket for staged Parquet files.")
    staging_prefix: str = Field("flowbridge/redshift-staging", description="Key prefix there.")
    staging_kms_key_id: str | None = Field(
        None,
        description="KMS key (id, ARN or alias/NAME) the staged files are encrypted with (SSE-KMS; "
        "the COPY role needs kms:Decrypt on it); SSE-S3 (AES256) when unset.",
    )
    iam_role: str | None = Field(None, description="The role COPY reads S3 with (data_api).")
    statement_timeout_s: int = Field(
        3600, gt=0, description="Data API: a statement not done by then is cancelled."
    )
    connection_name: str = Field("redshift")

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)
