"""AppFlow flows as flow files (`flowbridge import-appflow`), and the tables both ways share."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from flow_assets.spec import appflow_model as model
from flow_assets.spec.appflow_model import join
from flow_assets.spec.errors import FlowFileError, Problem
from flow_assets.spec.loading import (
    CONNECTIONS_FILE,
    field_reference_problems,
    pydantic_problems,
    read_yaml,
)
from flow_assets.spec.models import FlowSpec, Task

CFN_TYPE = "AWS::AppFlow::Flow"
# Sources Flowbridge can read today (connectors/ says the same, but it pulls in Dagster).
READABLE = ("salesforce", "s3", "zendesk", "servicenow", "slack", "sap_odata", "hubspot",
            "google_analytics")  # fmt: skip
# The connectors of connections.yaml (connectors/ CONNECTION_TYPES): only these are suggested.
CONNECTION_KINDS = ("aws", "redshift", *(c for c in READABLE if c != "s3"))
# AppFlow's connectorType -> Flowbridge's connector; any other is written in lower case.
CONNECTORS = {
    "Salesforce": "salesforce", "S3": "s3", "Redshift": "redshift", "EventBridge": "eventbridge",
    "Zendesk": "zendesk", "Servicenow": "servicenow", "Slack": "slack", "SAPOData": "sap_odata",
}  # fmt: skip
# Sources AppFlow reaches through a managed custom connector (connectorType CustomConnector): the
# flow does not say which; the connection named after connectorProfileName in connections.yaml does.
CUSTOM = ("hubspot", "google_analytics")
# The objects of the sources that read a fixed set (connectors/ says the same; a test checks).
OBJECTS = {
    "zendesk": ("tickets", "users", "organizations"),
    "slack": ("messages", "channels", "users"),
    "hubspot": ("contacts", "companies", "deals"),
    "google_analytics": ("report",),
}
# AppFlow's Slack object is one conversation; Flowbridge reads its messages with a channel filter.
SLACK_CONVERSATION = re.compile(r"conversations/(?P<channel>\S+)")
# AppFlow connectors without a connector profile: they use the account's own AWS access.
AWS_CONNECTORS = ("S3", "EventBridge")
AWS_CONNECTION = "aws_default"

FILTERS = {
    "EQUAL_TO": "equal_to",
    "NOT_EQUAL_TO": "not_equal_to",
    "LESS_THAN": "less_than",
    "LESS_THAN_OR_EQUAL_TO": "less_than_or_equal_to",
    "GREATER_THAN": "greater_than",
    "GREATER_THAN_OR_EQUAL_TO": "greater_than_or_equal_to",
    "CONTAINS": "contains",
    "BETWEEN": "between",
}
LIST_FILTERS = {"EQUAL_TO": "in", "NOT_EQUAL_TO": "not_in"}  # with VALUES: any of them
MASKS = {"MASK_ALL": "all", "MASK_FIRST_N": "first_n", "MASK_LAST_N": "last_n"}
ARITHMETIC = {
    "ADDITION": "add",
    "SUBTRACTION": "subtract",
    "MULTIPLICATION": "multiply",
    "DIVISION": "divide",
}
CHECKS = {
    "VALIDATE_NON_NULL": "non_null",
    "VALIDATE_NON_ZERO": "non_zero",
    "VALIDATE_NON_NEGATIVE": "non_negative",
    "VALIDATE_NUMERIC": "numeric",
}
ON_FAILURE = {"DropRecord": "drop", "TerminateFlow": "fail"}
FILE_TYPES = {"PARQUET": "parquet", "CSV": "csv", "JSON": "jsonl"}
DATE_LEVELS = ("YEAR", "MONTH", "DAY", "HOUR")  # AppFlow's MINUTE has no flow-file folder
# Data types as AppFlow's connectors name them -> the flow file's cast types, and back.
# SAP OData's are EDM types (Edm.String, Edm.Decimal...), matched without their "Edm." prefix.
_TYPE_NAMES = {
    "string": "string id reference picklist multipicklist textarea email phone url combobox text "
    "guid",
    "integer": "int integer long short int16 int32 int64 byte sbyte",
    "float": "double float decimal currency percent number single",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime timestamp datetimeoffset",
}
DATA_TYPES = {name: ours for ours, names in _TYPE_NAMES.items() for name in names.split()}
EXPORT_TYPES = {ours: names.split()[0] for ours, names in _TYPE_NAMES.items()}

RATE = re.compile(r"rate\(\s*(\d+)\s*(minute|minutes|hour|hours|day|days)\s*\)", re.I)
CRON = re.compile(r"cron\((.*)\)", re.I)

_TASK = TypeAdapter(Task)


@dataclass
class Conversion:
    """The result (a flow-file dict, or a CreateFlow request), what could not go across and why
    ("<path>: <why>"), and notes worth reading."""

    result: dict[str, Any]
    not_carried: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Import: the connections the flow names, with what the AppFlow flow says of their settings.
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)


def data_type(name: str | None) -> str | None:
    """The flow file's type for a data type as an AppFlow connector names it (Edm.Int32 too)."""
    return DATA_TYPES.get(re.sub(r"^edm\.", "", (name or "").lower()))


def normalise(text: str, prefix: str) -> str:
    """'My-Salesforce.Flow' -> 'my_salesforce_flow': lower_snake_case, as flow and connection
    names are."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    snake = re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_")
    return snake if re.match(r"[a-z]", snake) else f"{prefix}_{snake}".rstrip("_")


# ---------------------------------------------------------------------------------------------
# AppFlow -> flow file


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


class _Importer:
    def __init__(self, request: dict, where: Any, file: str, connectors: dict[str, str]):
        self.req, self.where, self.file, self.connectors = request, where, file, connectors
        self.not_carried: list[str] = []
        self.notes: list[str] = []
        self.suggested: dict[str, dict[str, Any]] = {}
        self.slack_channel: str | None = None

    def skip(self, path: str, why: str) -> None:
        self.not_carried.append(f"{self.where(path)}: {why}")

    def note(self, path: str, text: str) -> None:
        self.notes.append(f"{self.where(path)}: {text}")

    def fail(self, path: str, message: str) -> FlowFileError:
        return FlowFileError.single(self.file, self.where(path), message)

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

    # -- source ---------------------------------------------------------------------------

    def connection(self, config: dict, path: str, connector: str, **settings: Any) -> str:
        """The connection named after connectorProfileName, suggested for connections.yaml with
        the settings the flow tells (the rest of a profile is not in the flow)."""
        profile = config.get("connectorProfileName")
        if profile:
            name = normalise(profile, "connection")
            if name != profile:
                self.note(
                    join(path, "connectorProfileName"), f"'{profile}' is connection '{name}' here"
                )
        elif config["connectorType"] in AWS_CONNECTORS:
            name, connector = AWS_CONNECTION, "aws"
        else:
            name = f"{connector}_default"
            self.note(path, f"no connectorProfileName: connection '{name}' stands in for it")
        if connector in CONNECTION_KINDS:
            self.suggested.setdefault(name, {"connector": connector}).update(settings)
        return name

    def custom_connector(self, config: dict, path: str) -> str:
        """What an AppFlow CustomConnector profile reaches: the flow does not say (AppFlow keeps
        it as the profile's connectorLabel), the connection of the same name does."""
        profile = config.get("connectorProfileName") or ""
        name = normalise(profile, "connection") if profile else ""
        kind = self.connectors.get(name)
        if kind in CUSTOM:
            return kind
        where = join(path, "connectorProfileName" if profile else "connectorType")
        wanted = " or ".join(CUSTOM)
        if kind is None:
            raise self.fail(
                where,
                f"a CustomConnector flow does not say which connector profile '{profile}' "
                "reaches (AppFlow keeps that as the profile's connectorLabel): define connection "
                f"'{name or 'NAME'}' in {CONNECTIONS_FILE} beside the flow file with connector: "
                f"{wanted}, then import again",
            )
        raise self.fail(
            where,
            f"connection '{name}' in {CONNECTIONS_FILE} is a {kind} connection; a CustomConnector "
            f"flow is read here through a {wanted} connection",
        )

    def _properties(self, config: dict, path: str, key: str) -> tuple[str, dict]:
        """The one entry of source/destinationConnectorProperties, named like connectorType."""
        entries = config[key]
        names = [k for k in entries if k.lower() == config["connectorType"].lower()]
        if len(entries) != 1 or not names:
            raise self.fail(
                join(path, key),
                f"needs exactly one entry, named like connectorType '{config['connectorType']}'",
            )
        return join(path, f"{key}.{names[0]}"), entries[names[0]]

    def source(self) -> dict:
        config, path = self.req["sourceFlowConfig"], "sourceFlowConfig"
        kind = config["connectorType"]
        props_path, props = self._properties(config, path, "sourceConnectorProperties")
        if kind == "Googleanalytics":
            raise self.fail(
                join(path, "connectorType"),
                "Googleanalytics is AppFlow's Universal Analytics connector (views, ga: names), "
                "which Google no longer serves; Flowbridge's google_analytics reads a GA4 "
                "property, whose dimensions and metrics are other fields: write that flow anew "
                "(connector google_analytics, object report, fields: its dimensions and metrics)",
            )
        connector = (
            self.custom_connector(config, path)
            if kind == "CustomConnector"
            else CONNECTORS.get(kind, kind.lower())
        )
        found: dict[str, Any] = {}  # object, format, page_size
        settings: dict[str, Any] = {}  # the connection's, as far as the flow tells them
        carried = ["object"]
        if connector == "s3":
            found["object"] = "/".join(
                p.strip("/")
                for p in (props["bucketName"], props.get("bucketPrefix", ""))
                if p.strip("/")
            )
            self.note(props_path, "the bucket and prefix are the source's object")
            file_type = props.get("s3InputFormatConfig", {}).get("s3InputFileType")
            if file_type:
                found["format"] = FILE_TYPES[file_type]
            carried += ["bucketName", "bucketPrefix", "s3InputFormatConfig"]
        elif connector == "sap_odata":
            carried += self.sap_source(found, settings, props, props_path)
        elif kind == "CustomConnector":
            carried += self.custom_source(found, connector, props, props_path)
        elif connector == "slack" and (m := SLACK_CONVERSATION.fullmatch(props["object"])):
            found["object"], self.slack_channel = "messages", m["channel"]
            self.note(
                join(props_path, "object"),
                f"the conversation {m['channel']} is the messages object with a first task "
                f"filter: {{field: channel, operator: equal_to, value: {m['channel']}}}",
            )
        else:
            found["object"] = props["object"]
        source: dict[str, Any] = {
            "connector": connector,
            "connection": self.connection(config, path, connector, **settings),
            **found,
        }
        why = {
            "enableDynamicFieldUpdate": "Flowbridge reads source.fields, or every field the "
            "object describes at run time",
            "includeDeletedRecords": "false is Flowbridge's default (source.include_deleted)",
            "dataTransferApi": f"Flowbridge picks the {connector} API itself",
            "parallelismConfig": "Flowbridge reads an entity set in one sequence of pages (each "
            "window starts after the last record read), not in parallel",
        }
        if props.get("includeDeletedRecords") is True:
            source["include_deleted"] = True  # queryAll, with the _fb_deleted flag
            carried.append("includeDeletedRecords")
        for key in props:
            if key not in carried:
                self.skip(join(props_path, key), why.get(key, "no flow-file setting"))
        key = "entityName" if kind == "CustomConnector" else "object"
        self.known_object(connector, source["object"], join(props_path, key))
        if connector not in READABLE:
            self.skip(
                join(path, "connectorType"),
                f"Flowbridge has no {connector} source connector yet: written as "
                f"connector: {connector}, so the flow loads but cannot run until one exists",
            )
        if "apiVersion" in config:
            self.skip(join(path, "apiVersion"), "the connection chooses the API version")
        incremental = self.incremental(config)
        if incremental:
            source["incremental"] = incremental
        return source

    def sap_source(self, source: dict, settings: dict, props: dict, props_path: str) -> list[str]:
        """objectPath is the OData service's path and the entity set: the service is the
        connection's service_url (with the profile's host and port), the entity set the object."""
        object_path = props.get("objectPath")
        if not object_path:
            raise self.fail(
                join(props_path, "objectPath"),
                "is required to read SAP OData: the service path and entity set, e.g. "
                "/sap/opu/odata/sap/API_SALES_ORDER_SRV/A_SalesOrder",
            )
        service, _, entity_set = object_path.rstrip("/").rpartition("/")
        source["object"] = entity_set
        if service:
            settings["service_url"] = f"https://HOST:PORT{service}"
        self.note(
            join(props_path, "objectPath"),
            f"the entity set {entity_set} is the object"
            + (f"; the service {service} is the connection's service_url" if service else ""),
        )
        carried = ["objectPath"]
        page = props.get("paginationConfig", {}).get("maxPageSize")
        if page:
            source["page_size"] = page
            carried.append("paginationConfig")
        return carried

    def custom_source(self, source: dict, connector: str, props: dict, path: str) -> list[str]:
        entity = props["entityName"]
        if connector == "google_analytics":
            source["object"] = "report"
            self.skip(
                join(path, "entityName"),
                f"'{entity}': a GA4 connection reads one object, report, of the property in its "
                "property_id; the report's dimensions and metrics are source.fields",
            )
        else:
            last = entity.rstrip("/").rpartition("/")[2]
            source["object"] = last.lower() if last.lower() in OBJECTS[connector] else entity
            if source["object"] != entity:
                self.note(join(path, "entityName"), f"'{entity}' is the object {source['object']}")
        for key, value in props.get("customProperties", {}).items():
            self.skip(join(path, f"customProperties.{key}"), f"'{value}': no flow-file setting")
        return ["entityName", "customProperties"]

    def known_object(self, connector: str, name: str, path: str) -> None:
        objects = OBJECTS.get(connector)
        if objects and name not in objects:
            self.skip(
                path,
                f"Flowbridge's {connector} source reads {', '.join(objects)}: written as object "
                f"'{name}', so the flow loads but cannot run",
            )

    def slack_filter(self, source: dict) -> dict:
        """The conversation as a filter on the messages' channel, which source.fields then needs."""
        fields = source.get("fields")
        if fields is not None and "channel" not in fields:
            fields.append("channel")
            self.note("sourceFlowConfig", "channel is added to source.fields for its filter")
        return {"filter": {"field": "channel", "operator": "equal_to", "value": self.slack_channel}}

    def incremental(self, config: dict) -> dict | None:
        cursor = config.get("incrementalPullConfig", {}).get("datetimeTypeFieldName")
        trigger = self.req["triggerConfig"]
        scheduled = trigger.get("triggerProperties", {}).get("Scheduled", {})
        path = "triggerConfig.triggerProperties.Scheduled"
        mode = scheduled.get("dataPullMode")
        if trigger["triggerType"] == "Scheduled" and cursor and mode != "Complete":
            incremental = {"cursor_field": cursor}
            if "firstExecutionFrom" in scheduled:
                start = model.to_datetime(scheduled["firstExecutionFrom"])
                incremental["start"] = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return incremental
        if cursor:
            self.skip(
                "sourceFlowConfig.incrementalPullConfig",
                "AppFlow pulls incrementally only on a Scheduled trigger with dataPullMode "
                "Incremental, which this flow is not: it reads everything each run",
            )
        elif mode == "Incremental":
            self.skip(
                join(path, "dataPullMode"),
                "Incremental without incrementalPullConfig.datetimeTypeFieldName: write "
                "source.incremental.cursor_field by hand; until then each run reads everything",
            )
        if "firstExecutionFrom" in scheduled:
            self.skip(join(path, "firstExecutionFrom"), "used only by an incremental pull")
        return None

    # -- tasks --------------------------------------------------------------------------

    def tasks(self, source: dict) -> list[dict]:
        """AppFlow's tasks name source fields; the flow file's run in order. So: filters first
        (pushed down to the source), then Map_all, one `map` with every rename, then the rest with
        fields under their new names."""
        self.projection: list[str] = []
        self.filters: list[tuple[str, dict]] = []
        self.before: list[tuple[str, dict]] = []  # map_all, on source names
        self.renames: dict[str, Any] = {}
        self.mapped: list[str] = []
        self.after: list[tuple[str, dict]] = []
        self.produced: dict[str, dict] = {}  # Arithmetic / Merge results by name
        self.map_all = False
        for i, task in enumerate(self.req["tasks"]):
            self.task(f"tasks[{i}]", task)
        new_name = {
            old: t if isinstance(t, str) else t.get("to", old) for old, t in self.renames.items()
        }
        ordered = [
            *self.filters,
            *self.before,
            *([("tasks", {"map": self.renames})] if self.renames else []),
            *[(path, _renamed(task, new_name)) for path, task in self.after],
        ]
        used = [
            name
            for _, task in [*self.filters, *self.before, *self.after]
            for name in _names(task)
            if name not in self.produced
        ]
        self.source_fields(source, list(dict.fromkeys(used)))
        return [task for path, task in ordered if self.accepted(path, task)]

    def accepted(self, path: str, task: dict) -> bool:
        try:
            _TASK.validate_python(task)
        except ValidationError as exc:
            kind = next(iter(task))
            if exc.errors()[0]["type"] == "unknown_task":
                self.skip(path, f"the flow file has no '{kind}' task yet")
            else:
                why = "; ".join(p.message for p in pydantic_problems(exc, self.file))
                self.skip(path, f"as a '{kind}' task: {why}")
            return False
        return True

    def task(self, path: str, task: dict) -> None:
        kind, fields = task["taskType"], task["sourceFields"]
        operator = next(iter(task.get("connectorOperator", {}).values()), None)
        props = task.get("taskProperties", {})
        target = task.get("destinationField")
        if kind == "Filter":
            self.filter(path, fields, operator, props)
        elif kind == "Map":
            self.map(path, fields, target, props)
        elif kind == "Map_all":
            self.map_all = True
            self.map_all_task(path, props)
        elif kind == "Passthrough":
            self.note(
                path, "Passthrough needs no task: fields pass through unless a task changes them"
            )
        elif kind == "Partition":
            self.skip(
                path,
                "Flowbridge partitions S3 output by date and run id only "
                "(destination.s3.partitioning)",
            )
        elif len(fields) != 1 and kind in ("Mask", "Truncate", "Validate"):
            self.skip(path, f"a {kind} task on {len(fields)} fields; the flow file's takes one")
        elif kind == "Mask":
            self.mask(path, fields[0], operator, props)
        elif kind == "Truncate":
            self.truncate(path, fields[0], props)
        elif kind == "Validate":
            self.validate(path, fields[0], operator, props)
        elif not target:
            self.skip(path, f"a {kind} task without destinationField has no result to name")
        elif kind == "Arithmetic":
            self.arithmetic(path, fields, operator, props, target)
        elif kind == "Merge":
            self.merge(path, fields, props, target)

    def filter(self, path: str, fields: list[str], operator: str | None, props: dict) -> None:
        if operator == "PROJECTION":
            self.projection += [f for f in fields if f not in self.projection]
            return
        if len(fields) != 1:
            self.skip(path, f"a filter on {len(fields)} fields; the flow file's names one")
            return
        typed = props.get("DATA_TYPE")
        if operator == "BETWEEN" and {"LOWER_BOUND", "UPPER_BOUND"} <= set(props):
            ours, value = (
                "between",
                [_value(props[k], typed) for k in ("LOWER_BOUND", "UPPER_BOUND")],
            )
        elif "VALUES" in props and operator in LIST_FILTERS:
            ours = LIST_FILTERS[operator]
            value = [_value(v.strip(), typed) for v in props["VALUES"].split(",")]
        elif "VALUES" in props:
            self.skip(
                path,
                f"{operator} with a list of values matches any of them; flow-file "
                "filters all apply (AND), so one filter per value is not the same",
            )
            return
        elif operator in FILTERS and "VALUE" in props:
            ours, value = FILTERS[operator], _value(props["VALUE"], typed)
        else:
            self.skip(path, f"a filter {operator} without the VALUE, VALUES or bounds it needs")
            return
        self.filters.append(
            (path, {"filter": {"field": fields[0], "operator": ours, "value": value}})
        )

    def map(self, path: str, fields: list[str], target: str | None, props: dict) -> None:
        if len(fields) != 1:
            self.skip(path, f"a Map of {len(fields)} fields; the flow file maps one field to one")
            return
        old = fields[0]
        new = target or old
        cast = self.cast(path, props)
        if old in self.produced:  # names the result of an earlier Arithmetic or Merge
            self.produced[new] = self.produced.pop(old)
            self.produced[new]["field"] = new
            if cast:
                self.after.append((path, {"cast": {"field": new, "type": cast}}))
            return
        if old in self.mapped:
            self.skip(
                path, f"'{old}' is mapped a second time; a flow-file map renames a field once"
            )
            return
        self.mapped.append(old)
        if cast:
            self.renames[old] = {"to": new, "type": cast} if new != old else {"type": cast}
        elif new != old:
            self.renames[old] = new

    def cast(self, path: str, props: dict) -> str | None:
        """The flow-file type for DESTINATION_DATA_TYPE, if it differs from the source's."""
        wanted = props.get("DESTINATION_DATA_TYPE")
        if not wanted:
            return None
        ours = data_type(wanted)
        if ours is None:
            self.skip(
                join(path, "taskProperties.DESTINATION_DATA_TYPE"),
                f"'{wanted}' has no flow-file type; the field keeps its own",
            )
            return None
        if data_type(props.get("SOURCE_DATA_TYPE")) == ours:
            return None  # same kind of type: nothing to cast
        return ours

    def map_all_task(self, path: str, props: dict) -> None:
        try:
            exclude = json.loads(props.get("EXCLUDE_SOURCE_FIELDS_LIST", "[]"))
        except json.JSONDecodeError:
            exclude = None
        if not (isinstance(exclude, list) and all(isinstance(x, str) for x in exclude)):
            self.skip(
                join(path, "taskProperties.EXCLUDE_SOURCE_FIELDS_LIST"),
                'not a JSON list of field names such as ["a", "b"]',
            )
        elif exclude:
            self.before.append((path, {"map_all": {"exclude": exclude}}))
        else:
            self.note(path, "Map_all without exclusions needs no task: every field is written")

    def mask(self, path: str, name: str, operator: str | None, props: dict) -> None:
        how = MASKS.get(str(operator))
        if how is None:
            self.skip(
                path,
                f"a Mask with operator {operator}: only MASK_ALL, MASK_FIRST_N, MASK_LAST_N mask",
            )
            return
        spec: dict[str, Any] = {"field": name, "how": how}
        if how != "all":
            length = props.get("MASK_LENGTH", "")
            if not length.isdigit():
                self.skip(path, f"{operator} needs MASK_LENGTH, a whole number")
                return
            spec["n"] = int(length)
        char = props.get("MASK_VALUE", "*")
        if len(char) != 1:
            self.skip(
                join(path, "taskProperties.MASK_VALUE"),
                f"'{char}' is not one character; masked with '*'",
            )
        elif char != "*":
            spec["char"] = char
        self.after.append((path, {"mask": spec}))

    def truncate(self, path: str, name: str, props: dict) -> None:
        length = props.get("TRUNCATE_LENGTH", "")
        if not length.isdigit():
            self.skip(path, "a Truncate needs TRUNCATE_LENGTH, a whole number")
            return
        self.after.append((path, {"truncate": {"field": name, "length": int(length)}}))

    def validate(self, path: str, name: str, operator: str | None, props: dict) -> None:
        check = CHECKS.get(str(operator))
        if check is None:
            self.skip(path, f"a Validate with operator {operator}: only VALIDATE_* operators check")
            return
        spec = {"field": name, "check": check}
        action = props.get("VALIDATION_ACTION")
        if action in ON_FAILURE:
            spec["on_failure"] = ON_FAILURE[action]
        else:
            self.skip(
                join(path, "taskProperties.VALIDATION_ACTION"),
                f"'{action}' is not DropRecord or TerminateFlow: failed records are "
                "quarantined (kept in <flow>/rejected with the reason)",
            )
        self.after.append((path, {"validate": spec}))

    def arithmetic(
        self, path: str, fields: list[str], operator: str | None, props: dict, target: str
    ) -> None:
        ours = ARITHMETIC.get(str(operator))
        order = props.get("MATH_OPERATION_FIELDS_ORDER")
        operands = [f.strip() for f in order.split(",")] if order else fields
        if ours is None or len(operands) != 2:
            self.skip(
                path,
                f"an Arithmetic {operator} of {len(operands)} fields; the flow file's "
                "adds, subtracts, multiplies or divides two",
            )
            return
        spec = {"field": target, "operator": ours, "operands": operands}
        self.produced[target] = spec
        self.after.append((path, {"arithmetic": spec}))

    def merge(self, path: str, fields: list[str], props: dict, target: str) -> None:
        text = props.get("CONCAT_FORMAT")
        fmt = _concat_format(text, fields) if text else None
        if fmt is None:
            self.skip(path, "a Merge needs CONCAT_FORMAT naming its fields, e.g. '${A} ${B}'")
            return
        spec = {"field": target, "format": fmt}
        self.produced[target] = spec
        self.after.append((path, {"merge": spec}))

    def source_fields(self, source: dict, used: list[str]) -> None:
        """source.fields: AppFlow's projection, less the fields no Map sends anywhere; `used`
        are the source fields the tasks read."""
        fields = list(self.projection)
        if self.mapped and not self.map_all:
            unmapped = [f for f in fields if f not in self.mapped]
            needed = [f for f in unmapped if f in used]
            if unmapped:
                fields = [f for f in fields if f not in unmapped or f in needed]
                left = [f for f in unmapped if f not in needed]
                if left:
                    self.note(
                        "tasks",
                        f"source.fields leaves out {', '.join(left)}: AppFlow reads "
                        "them but no Map sends them to the destination",
                    )
            for name in needed:
                self.skip(
                    "tasks",
                    f"'{name}' is read for a task but mapped to no destination "
                    "field: AppFlow leaves it out, Flowbridge writes it",
                )
            if not fields:
                fields = [*self.mapped, *(u for u in used if u not in self.mapped)]
        cursor = source.get("incremental", {}).get("cursor_field")
        if fields and cursor and cursor not in fields:
            fields.append(cursor)
            self.note(
                "sourceFlowConfig.incrementalPullConfig",
                f"the cursor field {cursor} is added to source.fields",
            )
        if fields:
            source["fields"] = list(dict.fromkeys(fields))
            source_keys = [
                "connector", "connection", "object", "format", "fields", "incremental",
                "page_size", "include_deleted",
            ]  # fmt: skip
            ordered = {k: source[k] for k in source_keys if k in source}
            source.clear()
            source.update(ordered)

    # -- destination --------------------------------------------------------------------

    def destination(self, source_object: str) -> dict:
        configs = self.req["destinationFlowConfigList"]
        if not configs:
            raise self.fail(
                "destinationFlowConfigList", "is empty; a flow writes to one destination"
            )
        for i in range(1, len(configs)):
            self.skip(
                f"destinationFlowConfigList[{i}]",
                "a flow file has one destination, as an AppFlow flow transfers to one",
            )
        config, path = configs[0], "destinationFlowConfigList[0]"
        props_path, props = self._properties(config, path, "destinationConnectorProperties")
        kind = config["connectorType"]
        if kind in AWS_CONNECTORS:
            self.suggested.setdefault(AWS_CONNECTION, {"connector": "aws"})
        if kind == "S3":
            dest = self.s3(props, props_path)
        elif kind == "Redshift":
            dest = self.redshift(config, props, path, props_path)
        elif kind == "EventBridge":
            eb = {
                "connection": AWS_CONNECTION,
                "event_bus": props["object"],
                "source": props["object"],
                "detail_type": source_object,
            }
            self.note(
                join(props_path, "object"),
                "AppFlow's partner event source is the event_bus and the events' source; "
                "detail_type is the source object: check all three",
            )
            dest = {"connector": "eventbridge", "eventbridge": eb}
        elif kind == "Salesforce":
            dest = self.salesforce(config, props, path, props_path)
        elif kind == "Zendesk":
            dest = self.zendesk(config, props, path, props_path)
        elif kind == "CustomConnector":
            dest = self.custom_destination(config, props, path, props_path)
        else:
            dest = self.other_destination(config, props, path, props_path)
        if "errorHandlingConfig" in props:
            self.skip(
                join(props_path, "errorHandlingConfig"),
                "records a destination refuses go to the flow's error location with the "
                "reason; there is no stop-at-first-error setting",
            )
        return dest

    def s3(self, props: dict, path: str) -> dict:
        s3: dict[str, Any] = {"connection": AWS_CONNECTION, "bucket": props["bucketName"]}
        if props.get("bucketPrefix", "").strip("/"):
            s3["prefix"] = props["bucketPrefix"].strip("/")
        output = props.get("s3OutputFormatConfig", {})
        out_path = join(path, "s3OutputFormatConfig")
        if "fileType" in output:
            s3["format"] = FILE_TYPES[output["fileType"]]
        partitioning = self.partitioning(
            output.get("prefixConfig", {}), join(out_path, "prefixConfig")
        )
        if partitioning:
            s3["partitioning"] = partitioning
        aggregation = output.get("aggregationConfig", {})
        if aggregation.get("aggregationType") != "SingleFile" and aggregation.get("targetFileSize"):
            s3["file_size_mb"] = aggregation["targetFileSize"]
        elif aggregation.get("aggregationType") == "None":
            self.note(
                join(out_path, "aggregationConfig"),
                "None (a file per batch of records): Flowbridge writes one file per run "
                "unless destination.s3.file_size_mb is set",
            )
        if "preserveSourceDataTyping" in output:
            self.skip(
                join(out_path, "preserveSourceDataTyping"),
                "Flowbridge always writes the source's types",
            )
        if "kmsArn" in self.req:
            s3["encryption"] = {"type": "sse-kms", "kms_key_id": self.req["kmsArn"]}
        glue = self.req.get("metadataCatalogConfig", {}).get("glueDataCatalog")
        if glue:
            catalog = "metadataCatalogConfig.glueDataCatalog"
            if re.fullmatch(r"[a-z0-9_]{1,255}", glue["databaseName"]):
                s3["glue"] = {"database": glue["databaseName"]}
            else:
                self.skip(
                    join(catalog, "databaseName"), "a Glue database name here is lower_snake_case"
                )
            self.skip(
                join(catalog, "tablePrefix"),
                "the Glue table is named after the flow, or destination.s3.glue.table",
            )
            self.skip(
                join(catalog, "roleArn"),
                "Flowbridge registers tables with the aws connection's own credentials",
            )
        return {"connector": "s3", "write": "append", "s3": s3}

    def partitioning(self, prefix: dict, path: str) -> list[str]:
        parts: list[str] = []
        kind, level = prefix.get("prefixType"), prefix.get("prefixFormat")
        if kind in ("FILENAME", "PATH_AND_FILENAME") and level:
            self.skip(
                join(path, "prefixType"),
                f"{kind}: a date in file names; Flowbridge names "
                "files itself and dates only folders",
            )
        if kind in ("PATH", "PATH_AND_FILENAME") and level:
            if level == "MINUTE":
                self.skip(join(path, "prefixFormat"), "MINUTE: the finest folder is hour")
                level = "HOUR"
            parts += [d.lower() for d in DATE_LEVELS[: DATE_LEVELS.index(level) + 1]]
        for i, element in enumerate(prefix.get("pathPrefixHierarchy", [])):
            if element == "EXECUTION_ID":
                parts.append("run_id")
            else:
                self.skip(
                    f"{path}.pathPrefixHierarchy[{i}]",
                    f"{element}: no schema-version folders in Flowbridge",
                )
        return parts

    def redshift(self, config: dict, props: dict, path: str, props_path: str) -> dict:
        staging = {"staging_bucket": props["intermediateBucketName"]}
        redshift = {"connection": self.connection(config, path, "redshift", **staging)}
        schema, _, table = props["object"].rpartition(".")
        for key, name in (("schema", schema), ("table", table)):
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name):
                redshift[key] = name
            elif name:
                self.skip(
                    join(props_path, "object"),
                    f"{key} '{name}' needs quoting in SQL; "
                    "a flow file names plain identifiers only",
                )
        for key in ("intermediateBucketName", "bucketPrefix"):
            if key in props:
                self.skip(
                    join(props_path, key),
                    "Flowbridge stages through the redshift "
                    "connection's staging_bucket (connections.yaml)",
                )
        return {"connector": "redshift", "write": "append", "redshift": redshift}

    def salesforce(self, config: dict, props: dict, path: str, props_path: str) -> dict:
        sf = {"connection": self.connection(config, path, "salesforce"), "object": props["object"]}
        write = (props.get("writeOperationType") or "INSERT").lower()
        keys = props.get("idFieldNames") or []
        dest: dict[str, Any] = {"connector": "salesforce", "write": write}
        if write == "upsert":
            if len(keys) != 1:
                raise self.fail(
                    join(props_path, "idFieldNames"), "upsert needs one external id field"
                )
            dest["key"], sf["external_id_field"] = keys, keys[0]
        elif keys and keys != ["Id"]:
            self.skip(join(props_path, "idFieldNames"), f"{write} matches records by Id here")
        api = {"AUTOMATIC": "automatic", "REST_SYNC": "rest", "BULKV2": "bulk"}
        if props.get("dataTransferApi") in api:
            if props["dataTransferApi"] != "AUTOMATIC":  # automatic is the flow file's default
                sf["api"] = api[props["dataTransferApi"]]
        elif "dataTransferApi" in props:
            self.skip(join(props_path, "dataTransferApi"),
                      f"{props['dataTransferApi']}: api is automatic, rest or bulk")  # fmt: skip
        return dest | {"salesforce": sf}

    def saas_write(self, props: dict, props_path: str, connector: str, key: str) -> dict:
        """writeOperationType (INSERT when absent) and idFieldNames as a SaaS sink's write: insert,
        or upsert matched on one field (`key`: the only one the sink can match on, or None)."""
        write = props.get("writeOperationType") or "INSERT"
        ids = props.get("idFieldNames") or []
        if write == "INSERT":
            if ids:
                self.skip(join(props_path, "idFieldNames"), "an insert matches no records")
            return {"write": "insert"}
        if write != "UPSERT":
            raise self.fail(
                join(props_path, "writeOperationType"),
                f"{write}: Flowbridge's {connector} destination inserts (INSERT) or upserts "
                "(UPSERT); write this flow's records another way",
            )
        if len(ids) != 1 or (key is not None and ids != [key]):
            on = f"[{key}]" if key else "one field with unique values"
            raise self.fail(
                join(props_path, "idFieldNames"),
                f"{ids}: an upsert to {connector} here matches records on {on}",
            )
        return {"write": "upsert", "key": ids}

    def zendesk(self, config: dict, props: dict, path: str, props_path: str) -> dict:
        if props["object"] != "tickets":
            raise self.fail(
                join(props_path, "object"),
                f"'{props['object']}': Flowbridge's zendesk destination writes tickets only",
            )
        dest = {"connector": "zendesk", **self.saas_write(props, props_path, "zendesk",
                                                          "external_id")}  # fmt: skip
        conn = self.connection(config, path, "zendesk")
        return dest | {"zendesk": {"connection": conn, "object": "tickets"}}

    def custom_destination(self, config: dict, props: dict, path: str, props_path: str) -> dict:
        connector = self.custom_connector(config, path)
        if connector != "hubspot":
            raise self.fail(
                join(path, "connectorType"),
                f"connection '{normalise(config['connectorProfileName'], 'connection')}' is "
                f"{connector}, a source only: Flowbridge writes to hubspot through a "
                "CustomConnector destination",
            )
        dest = {"connector": "hubspot", **self.saas_write(props, props_path, "hubspot", None)}
        hubspot = {"connection": self.connection(config, path, "hubspot")}
        hubspot["object"] = props["entityName"]
        if dest["write"] == "upsert":
            hubspot["id_property"] = dest["key"][0]
        for key, value in props.get("customProperties", {}).items():
            self.skip(
                join(props_path, f"customProperties.{key}"), f"'{value}': no flow-file setting"
            )
        return dest | {"hubspot": hubspot}

    def other_destination(self, config: dict, props: dict, path: str, props_path: str) -> dict:
        connector = CONNECTORS.get(config["connectorType"], config["connectorType"].lower())
        dest: dict[str, Any] = {"connector": connector}
        write = props.get("writeOperationType")
        keys = props.get("idFieldNames") or []
        if write == "UPSERT" and keys:
            dest.update(write="upsert", key=keys)
        elif write == "INSERT":
            dest["write"] = "append"
        elif write:
            self.skip(
                join(props_path, "writeOperationType"),
                f"{write}{' without idFieldNames' if write == 'UPSERT' else ''}: a flow file "
                "writes append, overwrite, or upsert by key; written as append",
            )
            dest["write"] = "append"
        what = f"object '{props['object']}'" if "object" in props else "its settings"
        self.skip(
            props_path,
            f"Flowbridge has no {connector} destination yet: written as connector: "
            f"{connector} (`flowbridge validate` reports it); {what} and connection "
            f"'{config.get('connectorProfileName', '')}' have no place in the flow file yet",
        )
        return dest

    # -- trigger --------------------------------------------------------------------------

    def trigger(self, status: str | None) -> Any:
        config = self.req["triggerConfig"]
        kind = config["triggerType"]
        if kind == "OnDemand":
            return "on_demand"
        if kind == "Event":
            self.note(
                "triggerConfig.triggerType",
                "Event: a sensor asks the source every min_interval_minutes (5) whether records "
                "changed and runs the flow when they did; AppFlow's events carry only the "
                "changed records, so give the flow source.incremental (cursor_field: "
                "SystemModstamp) to read only those",
            )
            return {"event": "source_changes", **({"status": "on"} if status == "Active" else {})}
        path = "triggerConfig.triggerProperties.Scheduled"
        scheduled = config.get("triggerProperties", {}).get("Scheduled")
        if scheduled is None:
            raise self.fail(path, "is required for triggerType Scheduled; add it")
        expression = self.schedule(
            scheduled["scheduleExpression"], join(path, "scheduleExpression")
        )
        if expression is None:
            return "on_demand"
        trigger = {"schedule": expression, "timezone": scheduled.get("timezone") or "UTC"}
        if status == "Active":
            trigger["status"] = "on"
        if "scheduleStartTime" in scheduled:
            trigger["start"] = model.to_datetime(scheduled["scheduleStartTime"]).isoformat()
        if scheduled.get("scheduleOffset"):
            trigger["offset_minutes"] = self.offset(scheduled["scheduleOffset"], path)
        for key, why in (
            ("scheduleEndTime", "a schedule here runs until it is turned off"),
            ("flowErrorDeactivationThreshold", "a schedule here stays on after failed runs"),
        ):
            if key in scheduled:
                self.skip(join(path, key), why)
        return trigger

    def offset(self, seconds: int, path: str) -> int:
        """AppFlow's scheduleOffset (seconds, up to 36000) as whole minutes."""
        minutes = (seconds + 30) // 60
        if seconds % 60:
            self.note(
                join(path, "scheduleOffset"),
                f"{seconds} seconds written as offset_minutes: {minutes} (schedules here "
                "tick on whole minutes)",
            )
        return minutes

    def schedule(self, expression: str, path: str) -> str | None:
        """AppFlow's rate(...) as the flow file spells it, its 6-field cron(...) as 5-field cron."""
        text = expression.strip()
        if m := RATE.fullmatch(text):
            n, unit = int(m[1]), m[2].lower().rstrip("s")
            return f"rate({n} {unit}{'s' if n != 1 else ''})"
        if (m := CRON.fullmatch(text)) and (cron := _cron5(m[1])):
            return cron
        self.skip(
            path,
            f"'{expression}' has no 5-field cron equivalent (a year, L, W or #); "
            "written as on_demand: write trigger.schedule by hand",
        )
        return None


def _value(text: str, appflow_type: str | None) -> Any:
    """A filter value in its type: AppFlow writes them all as text (datetimes in epoch ms)."""
    kind = data_type(appflow_type)
    if kind in (None, "integer", "float") and re.fullmatch(r"-?\d+", text):
        return int(text)
    if kind in (None, "float") and re.fullmatch(r"-?\d*\.\d+", text):
        return float(text)
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kind in ("date", "datetime"):
        if text.isdigit():
            moment = datetime.fromtimestamp(int(text) / 1000, UTC)
            return moment.date() if kind == "date" else moment
        parsed = model.to_datetime(text)
        if parsed:
            return parsed.date() if kind == "date" else parsed
    return text


def _concat_format(text: str, fields: list[str]) -> str | None:
    """'${A} ${B}' (or '{A} {B}') as the flow file's merge format '{A} {B}'."""
    if "${" in text:
        pieces = re.split(r"\$\{([^}]*)\}", text)
        return "".join(
            f"{{{p}}}" if i % 2 else p.replace("{", "{{").replace("}", "}}")
            for i, p in enumerate(pieces)
        )
    return text if any(f"{{{f}}}" in text for f in fields) else None


def _names(task: dict) -> list[str]:
    """Every field a flow-file task reads or names."""
    kind, spec = next(iter(task.items()))
    if kind == "map" or not isinstance(spec, dict):
        return []
    names = [spec["field"]] if isinstance(spec.get("field"), str) else []
    names += [o for o in spec.get("operands", []) if isinstance(o, str)]
    names += re.findall(r"(?<!\{)\{([^{}]+)\}", spec.get("format", "")) if "merge" in task else []
    return names + list(spec.get("exclude", []))


def _renamed(task: dict, new_name: dict[str, str]) -> dict:
    """The task with source field names replaced by the names the `map` gave them."""
    kind, spec = next(iter(task.items()))
    spec = dict(spec)
    if kind not in ("arithmetic", "merge") and spec.get("field") in new_name:
        spec["field"] = new_name[spec["field"]]
    if "operands" in spec:
        spec["operands"] = [
            new_name.get(o, o) if isinstance(o, str) else o for o in spec["operands"]
        ]
    if "format" in spec:
        spec["format"] = re.sub(
            r"(?<!\{)\{([^{}]+)\}", lambda m: "{" + new_name.get(m[1], m[1]) + "}", spec["format"]
        )
    return {kind: spec}


def _cron5(text: str) -> str | None:
    """AppFlow's (EventBridge's) 'm h dom mon dow year' as 'm h dom mon dow', when it fits."""
    parts = text.split()
    if len(parts) != 6 or parts[5] not in ("*", "?") or re.search(r"[LW#]", parts[2] + parts[4]):
        return None
    minute, hour, dom, month, dow, _ = parts
    # EventBridge counts the days of the week 1 (Sunday) to 7; cron 0 (Sunday) to 6.
    dow = "*" if dow == "?" else re.sub(r"(?<![/\d])\d+", lambda m: str(int(m[0]) - 1), dow)
    return " ".join([minute, hour, "*" if dom == "?" else dom, month, dow])


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
