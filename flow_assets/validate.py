"""`flowbridge validate`: every flow checked offline, then against its source when reachable."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from flow_assets.connectors import connection_resource, open_source
from flow_assets.connectors.aws import AwsConnection
from flow_assets.connectors.errors import AuthError, ConnectorError, UnknownField, UnknownObject
from flow_assets.connectors.http import TransientError
from flow_assets.factory import build_flow
from flow_assets.pull import deleted_when
from flow_assets.spec import FlowFileError, FlowSpec, load_project
from flow_assets.spec.errors import Problem
from flow_assets.spec.loading import CONNECTIONS_FILE, field_reference_problems


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flows_ok: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)  # connection -> why, asked once


def validate_project(root: Path, online: bool = True) -> Report:
    report = Report()
    project = load_project(root)
    report.problems.extend(project.problems)
    conn_file = root / CONNECTIONS_FILE
    for name, flow in project.flows.items():
        file = project.flow_files[name]
        if flow.source.connection not in project.connections:
            continue  # connections.yaml did not load; its problems are reported already
        try:
            resource = connection_resource(
                flow.source.connection, project.connections[flow.source.connection], conn_file
            )
            build_flow(flow, file, project.connections)
        except FlowFileError as exc:
            report.problems.extend(p for p in exc.problems if p not in report.problems)
            continue
        problems = _online_problems(flow, file, resource, report) if online else []
        report.problems.extend(problems)
        if not problems:
            report.flows_ok.append(name)
    return report


def _online_problems(
    flow: FlowSpec, file: Path, resource: dg.ConfigurableResource, report: Report
) -> list[Problem]:
    src = flow.source
    if src.connection in report.unreachable:
        report.notes.append(f"{file}: not checked against the source (unreachable: "
                            f"{report.unreachable[src.connection]})")  # fmt: skip
        return []
    unset = [
        value
        for name in type(resource).model_fields
        if isinstance(value := getattr(resource, name, None), dg.EnvVar) and value not in os.environ
    ]
    if unset:
        report.notes.append(
            f"{file}: not checked against the source: environment variable(s) "
            f"{', '.join(unset)} not set"
        )
        return []
    if isinstance(resource, AwsConnection) and not resource.has_credentials():
        report.notes.append(
            f"{file}: not checked against the source: no AWS credentials here "
            "(environment, ~/.aws or an instance role)"
        )
        return []
    try:
        with dg.build_resources({"connection": resource}) as r:
            client = open_source(r.connection, src, max_attempts=2)
            schema = client.describe(src.object)
            fields = list(src.fields or schema.fields)
            schema.require(fields)
            deleted_when(flow, schema)
    except UnknownObject as exc:
        return [Problem(str(file), "source.object", str(exc))]
    except UnknownField as exc:
        where, _, message = str(exc).partition(": ")
        if where == "source.include_deleted":
            return [Problem(str(file), where, message)]
        return [Problem(str(file), "source.fields", str(exc).split(": ", 1)[-1])]
    except AuthError as exc:
        return [Problem(str(file), "source.connection", str(exc))]
    except TransientError as exc:
        if not exc.unreachable:
            return [Problem(str(file), "source", str(exc))]
        report.unreachable[src.connection] = str(exc)
        report.notes.append(f"{file}: not checked against the source (unreachable: {exc})")
        return []
    except ConnectorError as exc:
        return [Problem(str(file), "source", str(exc))]
    return field_reference_problems(flow, fields, str(file))
