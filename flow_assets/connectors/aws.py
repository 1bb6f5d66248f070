"""An AWS account: boto3 clients from the standard credential chain, with an optional endpoint
override (a moto server on 127.0.0.1 in tests). No credential is ever a setting here."""

from typing import ClassVar

import boto3
import dagster as dg
from botocore.config import Config
from pydantic import Field


class AwsConnection(dg.ConfigurableResource):
    """Credentials come from the environment, ~/.aws or the instance role, as boto3 finds them."""

    region_name: str = Field("us-east-1", description="The AWS region.")
    endpoint_url: str | None = Field(
        None, description="Override every service's endpoint, e.g. http://127.0.0.1:5000."
    )
    profile_name: str | None = Field(None, description="A profile in ~/.aws/config.")
    max_attempts: int = Field(8, ge=1, description="Attempts per call (throttling, 5xx).")
    connection_name: str = Field("aws", description="Named in error messages.")

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()

    def client(self, service: str):  # noqa: ANN201 (boto3 clients are untyped)
        session = boto3.session.Session(
            profile_name=self.profile_name or None, region_name=self.region_name
        )
        config = Config(retries={"mode": "standard", "max_attempts": self.max_attempts})
        return session.client(service, endpoint_url=self.endpoint_url or None, config=config)
