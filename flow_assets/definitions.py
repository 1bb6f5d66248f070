"""The single Dagster entry point: every flow file in the flows folder, as assets."""

from __future__ import annotations

import logging

import dagster as dg

from flow_assets.connectors import connection_resource, resource_key
from flow_assets.connectors.aws import AwsConnection
from flow_assets.destinations import LakeIOManager, StagingArea, StagingIOManager
from flow_assets.destinations.dynamodb import DynamoDBIOManager
from flow_assets.destinations.eventbridge import EventBridgeIOManager
from flow_assets.destinations.s3 import S3IOManager
from flow_assets.environment import Settings
from flow_assets.factory import build_flow, invalid_flow_asset
from flow_assets.spec import FlowFileError, load_project

log = logging.getLogger(__name__)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Load every flow; a broken file becomes a visible stand-in asset, never a load failure."""
    project = load_project(settings.flows_dir)
    errors = dict(project.errors)
    parts: list[dg.Definitions] = []
    resources: dict[str, object] = {}
    conn_file = settings.flows_dir / "connections.yaml"
    for name, spec in project.connections.items():
        try:
            resources[resource_key(name)] = connection_resource(name, spec, conn_file)
        except FlowFileError as exc:
            errors[conn_file] = exc
    for name, flow in project.flows.items():
        file = project.flow_files[name]
        if resource_key(flow.source.connection) not in resources:
            continue  # the connection's own error is reported against connections.yaml
        try:
            parts.append(build_flow(flow, file, project.connections))
        except FlowFileError as exc:
            errors[file] = exc
    for _path, error in errors.items():
        log.warning("flow file did not load: %s", error)
    for name, spec in project.connections.items():
        resource = resources.get(resource_key(name))
        if spec.connector == "aws" and isinstance(resource, AwsConnection):
            error_root = str(settings.lake_dir)
            resources[f"s3_io_manager__{name}"] = S3IOManager(connection=resource)
            resources[f"dynamodb_io_manager__{name}"] = DynamoDBIOManager(
                connection=resource, error_root=error_root
            )
            resources[f"eventbridge_io_manager__{name}"] = EventBridgeIOManager(
                connection=resource, error_root=error_root
            )
    staging = StagingArea(root=str(settings.staging_dir))
    lake = LakeIOManager(root=str(settings.lake_dir))
    parts.append(
        dg.Definitions(
            assets=[invalid_flow_asset(path, err) for path, err in errors.items()],
            resources={
                **resources,
                "staging": staging,
                "staging_io_manager": StagingIOManager(staging=staging),
                "lake_io_manager": lake,
                "error_io_manager": lake,
            },
        )
    )
    return dg.Definitions.merge(*parts)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
