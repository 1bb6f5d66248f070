"""AppFlow flows as flow files (`flowbridge import-appflow`): the request unwrapped and checked,
the importer assembled from its parts, and the flow file written as YAML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from flow_assets.spec import appflow_model as model
from flow_assets.spec.appflow_destinations import DestinationImport
from flow_assets.spec.appflow_import_base import normalise
from flow_assets.spec.appflow_model import join
from flow_assets.spec.appflow_sources import SourceImport
from flow_assets.spec.appflow_tables import Conversion
from flow_assets.spec.appflow_tasks import TaskImport
from flow_assets.spec.appflow_trigger import TriggerImport
from flow_assets.spec.errors import FlowFileError, Problem
from flow_assets.spec.loading import (
    CONNECTIONS_FILE,
    field_reference_problems,
    pydantic_problems,
    read_yaml,
)
from flow_assets.spec.models import FlowSpec

CFN_TYPE = "AWS::AppFlow::Flow"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FlowFileError.single(str(path), "", f"cannot read file: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise FlowFileError.single(
            str(path), "", f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc


def import_appflow(raw: Any, file: str, connectors: dict[str, str] | None = None) -> Conversion:
    """A CreateFlow request, a describe-flow answer or a CloudFormation AWS::AppFlow::Flow, checked
    against botocore's appflow model, as a flow-file dict that FlowSpec accepts. `connectors`
    (connection name -> connector, from connections.yaml) tells what a CustomConnector profile is."""
    request, status, where, notes = _request_of(raw, file)
    importer = _Importer(request, where, file, connectors or {})
    importer.notes += notes
    flow = importer.flow(status)
    _check_flow(flow, file)
    return Conversion(flow, importer.not_carried, importer.notes, importer.suggested)


def _request_of(raw: Any, file: str) -> tuple[dict, str | None, Any, list[str]]:
    """(request in the API's shape, the flow's status if given, API path -> input path, notes)."""
    if not isinstance(raw, dict):
        raise FlowFileError.single(
            file,
            "",
            "expected a JSON object: a CreateFlow request, a describe-flow answer or "
            f"a CloudFormation template with a {CFN_TYPE}",
        )
    found: model.Found = []
    status_shape = model.describe_shape().members["flowStatus"]
    notes: list[str] = []
    if "Resources" in raw or raw.get("Type") == CFN_TYPE or "FlowName" in raw:
        props, base = _cloudformation_properties(raw, file)
        status = props.pop("FlowStatus", None)
        if status is not None:
            found += model.check(status, status_shape, join(base, "FlowStatus"))
        request, where = model.from_cloudformation(props, base)
    else:
        request, where = dict(raw), lambda path: path
        if request.pop("ResponseMetadata", None) is not None:
            notes.append("ResponseMetadata: the details of boto3's call, not of the flow; ignored")
        describe = model.describe_shape().members
        state = {
            k: request.pop(k)
            for k in list(request)
            if k in describe and k not in model.request_shape().members
        }
        for key, value in state.items():
            found += model.check(value, describe[key], key)
        status = state.pop("flowStatus", None)
        if state:
            notes.append(f"{', '.join(state)}: describe-flow's record of the flow's runs; ignored")
    found += model.check(request, model.request_shape())
    if found:
        raise FlowFileError([Problem(file, where(path), message) for path, message in found])
    return request, status, where, notes


def _cloudformation_properties(raw: dict, file: str) -> tuple[dict, str]:
    resource, base = raw, ""
    if "Resources" in raw:
        resources = raw["Resources"] if isinstance(raw["Resources"], dict) else {}
        flows = [
            k for k, r in resources.items() if isinstance(r, dict) and r.get("Type") == CFN_TYPE
        ]
        if len(flows) != 1:
            named = f" ({', '.join(flows)})" if flows else ""
            raise FlowFileError.single(
                file,
                "Resources",
                f"holds {len(flows)} resources of Type {CFN_TYPE}{named}; "
                "import takes a template with exactly one",
            )
        resource, base = resources[flows[0]], f"Resources.{flows[0]}"
    elif "FlowName" in raw:
        return dict(raw), ""  # the resource's Properties on their own
    props = resource.get("Properties")
    if not isinstance(props, dict):
        raise FlowFileError.single(
            file, join(base, "Properties"), "is required; add the flow's properties"
        )
    return dict(props), join(base, "Properties")


def _check_flow(flow: dict, file: str) -> None:
    """The imported flow must load: FlowSpec, then the field names through every task."""
    try:
        spec = FlowSpec.model_validate(flow)
    except ValidationError as exc:
        problems = pydantic_problems(exc, file)
    else:
        fields = spec.source.fields
        problems = field_reference_problems(spec, list(fields), file) if fields else []
    if problems:
        raise FlowFileError(
            [
                Problem(file, "", f"the imported flow file would not load: {p.path}: {p.message}")
                for p in problems
            ]
        )


class _Importer(SourceImport, TaskImport, DestinationImport, TriggerImport):
    """The AppFlow request as a flow-file dict, one part of the flow at a time."""

    def flow(self, status: str | None) -> dict:
        req = self.req
        name = normalise(req["flowName"], "flow")
        if name != req["flowName"]:
            self.note(
                "flowName",
                f"'{req['flowName']}' is named '{name}' here: flow names are lower_snake_case",
            )
        flow: dict[str, Any] = {"name": name}
        if req.get("description"):
            flow["description"] = req["description"]
        source = self.source()
        flow["source"] = source
        tasks = self.tasks(source)
        if self.slack_channel is not None:
            tasks.insert(0, self.slack_filter(source))
        if tasks:
            flow["tasks"] = tasks
        flow["destination"] = self.destination(source["object"])
        flow["trigger"] = self.trigger(status)
        if "tags" in req:
            self.skip("tags", "the flow file has owners:, not tags")
        if "clientToken" in req:
            self.note("clientToken", "the idempotency token of one API call; ignored")
        if "kmsArn" in req and flow["destination"]["connector"] != "s3":
            self.skip(
                "kmsArn",
                "Flowbridge encrypts staged data with FLOWBRIDGE_STAGING_KMS_KEY "
                "(an environment setting), not per flow",
            )
        return flow


class _Inline(dict):
    """A mapping written on one line, as the example flows write their tasks."""


class _Block(dict):
    """A mapping written one key per line."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # list items indented under their key


for _kind, _flow_style in ((_Inline, True), (_Block, False)):
    _Dumper.add_representer(
        _kind,
        lambda d, v, style=_flow_style: d.represent_mapping("tag:yaml.org,2002:map", v, style),
    )


def to_yaml(conversion: Conversion, origin: str) -> str:
    """The flow file, with what was not carried over as comments at its top."""
    head = [f"# Imported from {origin} by `flowbridge import-appflow`."]
    if conversion.not_carried:
        head.append("# Not carried over (the flow file cannot hold these yet):")
        head += [f"#   - {line}" for line in conversion.not_carried]
    if conversion.connections:
        head.append(
            f"# Connections it names, for {CONNECTIONS_FILE} if it lacks them (AppFlow keeps the "
            "rest in its connector profiles; add credentials as ${ENV_VAR} references):"
        )
        entries = yaml.dump(conversion.connections, Dumper=_Dumper, sort_keys=False, width=120)
        head += [f"#   {line}" for line in entries.splitlines()]
    flow = dict(conversion.result)
    dest = flow.get("destination", {})
    block = dest.get(dest.get("connector"))
    if isinstance(block, dict) and len(str(block)) > 80:  # too long for one line
        flow["destination"] = {**dest, dest["connector"]: _Block(block)}
    if "tasks" in flow:
        flow["tasks"] = [{kind: _Inline(spec)} for t in flow["tasks"] for kind, spec in t.items()]
    body = yaml.dump(
        flow,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=None,
        width=120,
        allow_unicode=True,
    )
    return "\n".join(head) + "\n" + body


def known_connectors(folder: Path) -> dict[str, str]:
    """Connection name -> connector, from the connections.yaml in folder (empty if none)."""
    path = folder / CONNECTIONS_FILE
    try:
        known = read_yaml(path) if path.exists() else {}
    except FlowFileError:
        known = {}
    known = known if isinstance(known, dict) else {}
    return {
        str(name): str(settings.get("connector"))
        for name, settings in known.items()
        if isinstance(settings, dict)
    }


def connection_notes(flow: dict, folder: Path) -> list[str]:
    """A note for each connection the flow names that connections.yaml beside it lacks."""
    names = [flow["source"]["connection"]]
    dest = flow.get("destination", {})
    block = dest.get(dest.get("connector", ""))
    if isinstance(block, dict) and "connection" in block:
        names.append(block["connection"])
    known = known_connectors(folder)
    return [
        f"connection '{name}' is not in {folder / CONNECTIONS_FILE}: add it there before "
        "running the flow (the flow file's comments suggest an entry)"
        for name in dict.fromkeys(names)
        if name not in known
    ]
