"""Source connectors by name, and the Dagster resource built from a named connection."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import ValidationError

from flow_assets.connectors.aws import AwsConnection
from flow_assets.connectors.base import FieldInfo, ObjectSchema, ReadRequest, SourceClient
from flow_assets.connectors.errors import ConnectorError
from flow_assets.connectors.google_analytics import GoogleAnalyticsConnection
from flow_assets.connectors.hubspot import HubSpotConnection
from flow_assets.connectors.redshift import RedshiftConnection
from flow_assets.connectors.s3_source import S3SourceClient
from flow_assets.connectors.salesforce import SalesforceConnection
from flow_assets.connectors.sap_odata import SapODataConnection
from flow_assets.connectors.servicenow import ServiceNowConnection
from flow_assets.connectors.slack import SlackConnection
from flow_assets.connectors.zendesk import ZendeskConnection
from flow_assets.spec.env import env_name, resolve
from flow_assets.spec.errors import FlowFileError, Problem, did_you_mean
from flow_assets.spec.loading import pydantic_problems
from flow_assets.spec.models import ConnectionSpec, Source

CONNECTION_TYPES: dict[str, type[dg.ConfigurableResource]] = {
    "salesforce": SalesforceConnection,
    "aws": AwsConnection,
    "redshift": RedshiftConnection,
    "zendesk": ZendeskConnection,
    "hubspot": HubSpotConnection,
    "servicenow": ServiceNowConnection,
    "slack": SlackConnection,
    "google_analytics": GoogleAnalyticsConnection,
    "sap_odata": SapODataConnection,
}
# Connectors a flow can read from (open_source gives their SourceClient); aws: S3 objects.
SOURCE_CONNECTORS = ("salesforce", "aws", "zendesk", "hubspot", "servicenow", "slack",
                     "google_analytics", "sap_odata")  # fmt: skip

__all__ = [
    "CONNECTION_TYPES",
    "SOURCE_CONNECTORS",
    "ConnectorError",
    "FieldInfo",
    "ObjectSchema",
    "ReadRequest",
    "SourceClient",
    "connection_resource",
    "open_source",
    "resource_key",
]


def resource_key(connection: str) -> str:
    return f"connection_{connection}"


def open_source(
    resource: dg.ConfigurableResource, source: Source, max_attempts: int | None = None
) -> SourceClient:
    """An open session to a flow's source: the resource's own, or for an aws connection the S3
    objects under source.object, read as source.format."""
    if isinstance(resource, AwsConnection):
        return S3SourceClient(resource, source.format or "parquet", max_attempts)
    return resource.open(max_attempts=max_attempts)


def connection_resource(name: str, spec: ConnectionSpec, file: Path) -> dg.ConfigurableResource:
    """Build the connection's resource; secrets become dg.EnvVar, read only when a run needs them."""
    cls = CONNECTION_TYPES.get(spec.connector)
    if cls is None:
        raise FlowFileError.single(
            str(file),
            f"{name}.connector",
            f"unknown connector '{spec.connector}'{did_you_mean(spec.connector, CONNECTION_TYPES)}"
            f"; known connectors: {', '.join(sorted(CONNECTION_TYPES))}",
        )
    settings = {}
    for key, value in spec.settings.items():
        var = env_name(value)
        settings[key] = dg.EnvVar(var) if var else resolve(value, f"{file}: {name}.{key}")
    allowed = sorted(set(cls.model_fields) - {"connection_name"})
    problems = [
        Problem(
            str(file),
            f"{name}.{key}",
            f"unknown setting{did_you_mean(key, allowed)}; {spec.connector} takes: "
            + ", ".join(allowed),
        )
        for key in settings
        if key not in allowed
    ]
    problems += [
        Problem(str(file), f"{name}.{key}", "is a secret: write it as ${ENV_VAR}, not a literal")
        for key in getattr(cls, "SECRET_FIELDS", ())
        if key in settings and not isinstance(settings[key], dg.EnvVar)
    ]
    if problems:
        raise FlowFileError(problems)
    try:
        return cls(connection_name=name, **settings)
    except ValidationError as exc:
        raise FlowFileError(
            [
                Problem(p.file, f"{name}.{p.path}", p.message)
                for p in pydantic_problems(exc, str(file))
            ]
        ) from None
