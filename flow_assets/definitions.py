"""The single Dagster entry point: every flow file in the flows folder, as assets."""

from __future__ import annotations

import logging

import dagster as dg

from flow_assets.connectors import connection_resource, resource_key
from flow_assets.connectors.aws import AwsConnection
from flow_assets.connectors.redshift import RedshiftConnection
from flow_assets.destinations import LakeIOManager, StagingArea, StagingIOManager
from flow_assets.destinations.dynamodb import DynamoDBIOManager
from flow_assets.destinations.eventbridge import EventBridgeIOManager
from flow_assets.destinations.redshift import RedshiftIOManager
from flow_assets.destinations.s3 import S3IOManager
from flow_assets.destinations.s3_staging import S3ErrorIOManager, S3StagingArea
from flow_assets.destinations.saas_sinks import SAAS_SINKS
from flow_assets.environment import Settings
from flow_assets.factory import build_flow, destination_io_manager, invalid_flow_asset
from flow_assets.spec import ConnectionSpec, FlowFileError, load_project

log = logging.getLogger(__name__)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Load every flow; a broken file becomes a visible stand-in asset, never a load failure."""
    project = load_project(settings.flows_dir)
    errors = dict(project.errors)
    conn_file = settings.flows_dir / "connections.yaml"
    resources: dict[str, object] = {}
    for name, spec in project.connections.items():
        try:
            resources[resource_key(name)] = connection_resource(name, spec, conn_file)
        except FlowFileError as exc:
            errors[conn_file] = exc
    try:
        resources.update(destination_io_managers(project.connections, resources, settings))
    except FlowFileError as exc:
        errors[conn_file] = exc
    parts: list[dg.Definitions] = []
    for name, flow in project.flows.items():
        file = project.flow_files[name]
        needed = [resource_key(flow.source.connection), destination_io_manager(flow)]
        if not all(key in resources or key == "lake_io_manager" for key in needed):
            continue  # the connection's own error is reported against connections.yaml
        try:
            parts.append(build_flow(flow, file, project.connections))
        except FlowFileError as exc:
            errors[file] = exc
    for error in errors.values():
        log.warning("flow file did not load: %s", error)
    staging, errors_manager = staging_and_errors(settings)
    lake = LakeIOManager(root=str(settings.lake_dir))
    parts.append(
        dg.Definitions(
            assets=[invalid_flow_asset(path, err) for path, err in errors.items()],
            resources={
                **resources,
                "staging": staging,
                "staging_io_manager": StagingIOManager(staging=staging),
                "lake_io_manager": lake,
                "error_io_manager": errors_manager or lake,
            },
        )
    )
    return dg.Definitions.merge(*parts)


def staging_and_errors(
    settings: Settings,
) -> tuple[StagingArea, dg.ConfigurableIOManager | None]:
    """LOCAL: a staging folder, rejected records in the lake. AWS: staged data copied to S3
    and rejected records in its bucket (S3 destinations keep theirs in their own bucket)."""
    root = str(settings.staging_dir)
    s3 = settings.s3_staging
    if s3 is None:
        return StagingArea(root=root), None
    staging = S3StagingArea(
        root=root, bucket=s3.bucket, prefix=s3.prefix, kms_key_id=s3.kms_key_id,
        retention_days=s3.retention_days, region_name=s3.region_name,
    )  # fmt: skip
    return staging, S3ErrorIOManager(staging=staging, error_root=s3.error_root)


def destination_io_managers(
    connections: dict[str, ConnectionSpec], resources: dict[str, object], settings: Settings
) -> dict[str, dg.ConfigurableIOManager]:
    """The IO managers each AWS, Redshift or Salesforce connection offers, keyed as flows
    name them."""
    managers: dict[str, dg.ConfigurableIOManager] = {}
    errors = {"error_root": str(settings.lake_dir)}
    if settings.s3_staging is not None:  # AWS: refused records go to the staging bucket
        s3 = settings.s3_staging
        errors = {"error_root": s3.error_root, "error_kms_key_id": s3.kms_key_id}
    for name, spec in connections.items():
        resource = resources.get(resource_key(name))
        if isinstance(resource, AwsConnection):
            managers[f"s3_io_manager__{name}"] = S3IOManager(connection=resource)
            managers[f"dynamodb_io_manager__{name}"] = DynamoDBIOManager(
                connection=resource, **errors
            )
            managers[f"eventbridge_io_manager__{name}"] = EventBridgeIOManager(
                connection=resource, **errors
            )
        elif isinstance(resource, RedshiftConnection):
            aws = resources.get(resource_key(str(spec.settings.get("staging_connection"))))
            if not isinstance(aws, AwsConnection):
                raise FlowFileError.single(
                    str(settings.flows_dir / "connections.yaml"), f"{name}.staging_connection",
                    "must name an aws connection in connections.yaml",
                )  # fmt: skip
            managers[f"redshift_io_manager__{name}"] = RedshiftIOManager(
                connection=resource, staging=aws, error_root=errors["error_root"]
            )
        elif spec.connector in SAAS_SINKS:
            staging = settings.s3_staging  # AWS: the error root is in its bucket
            region = {"error_region_name": staging.region_name} if staging else {}
            managers[f"{spec.connector}_io_manager__{name}"] = SAAS_SINKS[spec.connector](
                connection=resource, **errors, **region
            )
    return managers


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
