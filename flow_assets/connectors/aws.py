"""An AWS account: boto3 clients from the standard credential chain, with an optional endpoint
override (a moto server on 127.0.0.1 in tests). No credential is ever a setting here."""

from typing import Any, ClassVar

import dagster as dg
from pydantic import Field


def aws_client(
    service: str,
    region_name: str,
    endpoint_url: str | None = None,
    profile_name: str | None = None,
    max_attempts: int = 8,
    connect_timeout: float = 60,
) -> Any:
    """A boto3 client with botocore's standard retries (throttling, 5xx). boto3 is imported
    here, not at module import: loading the definitions should not pay for it."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile_name or None, region_name=region_name)
    # total_max_attempts counts the first call; botocore's max_attempts would count retries.
    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
    )
    return session.client(service, endpoint_url=endpoint_url or None, config=config)


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

    def client(
        self, service: str, max_attempts: int | None = None, connect_timeout: float = 60
    ) -> Any:
        """max_attempts: the connection's unless given (a sensor makes one attempt per tick)."""
        return aws_client(
            service, self.region_name, self.endpoint_url, self.profile_name,
            max_attempts or self.max_attempts, connect_timeout,
        )  # fmt: skip

    def has_credentials(self) -> bool:
        """Whether boto3's credential chain finds any (it does not check them)."""
        import boto3

        session = boto3.session.Session(
            profile_name=self.profile_name or None, region_name=self.region_name
        )
        return session.get_credentials() is not None

    def storage_options(self) -> dict[str, str]:
        """The same credentials and endpoint, for writers that speak S3 themselves (deltalake).
        Handed to the writer only; never logged."""
        import boto3

        session = boto3.session.Session(
            profile_name=self.profile_name or None, region_name=self.region_name
        )
        found = session.get_credentials()
        if found is None:
            raise ValueError(
                f"connection '{self.connection_name}': no AWS credentials found "
                "(environment, ~/.aws or an instance role)"
            )
        creds = found.get_frozen_credentials()
        options = {
            "AWS_REGION": self.region_name,
            "AWS_ACCESS_KEY_ID": creds.access_key,
            "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        }
        if creds.token:
            options["AWS_SESSION_TOKEN"] = creds.token
        endpoint = str(self.client("s3").meta.endpoint_url)
        if not endpoint.endswith(".amazonaws.com"):  # an override: a moto server, MinIO...
            options["AWS_ENDPOINT_URL"] = endpoint
            options["AWS_ALLOW_HTTP"] = str(endpoint.startswith("http://")).lower()
        return options
