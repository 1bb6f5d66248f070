"""Flow files as AppFlow CreateFlow requests (`flowbridge export-appflow`), checked against
botocore's appflow model; what AppFlow cannot express is listed, never dropped silently."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import TypeAdapter

from flow_assets.spec import appflow_model as model
from flow_assets.spec.appflow_tables import (
    ARITHMETIC,
    CHECKS,
    DATE_LEVELS,
    EXPORT_TYPES,
    FILTERS,
    LIST_FILTERS,
    MASKS,
    RATE,
    Conversion,
)
from flow_assets.spec.env import MissingEnvironmentVariable, resolve
from flow_assets.spec.errors import FlowFileError, Problem
from flow_assets.spec.loading import CONNECTIONS_FILE, load_connections, load_flow_file
from flow_assets.spec.models import (
    BULK_THRESHOLD,
    ConnectionSpec,
    FlowSpec,
    Schedule,
    Trigger,
    task_kind,
)

_TRIGGER = TypeAdapter(Trigger)
# Flowbridge's sources -> AppFlow's connectorType and the key of their properties and operators.
S3_SOURCE = ("aws", "s3")  # a source on an aws connection (or connector: s3) reads S3 objects
APPFLOW_SOURCES = {
    "zendesk": ("Zendesk", "Zendesk"),
    "servicenow": ("Servicenow", "ServiceNow"),
    "slack": ("Slack", "Slack"),
    "sap_odata": ("SAPOData", "SAPOData"),
    "hubspot": ("CustomConnector", "CustomConnector"),  # AppFlow's managed HubSpot connector
}
SAP_MAX_PAGE = 10_000  # SAPODataPaginationConfig.maxPageSize
SF_APIS = {"automatic": "AUTOMATIC", "rest": "REST_SYNC", "bulk": "BULKV2"}


def export_file(path: Path) -> Conversion:
    """Load a flow file (with the connections.yaml beside it, if any) and export it."""
    conn_path = path.parent / CONNECTIONS_FILE
    connections = load_connections(conn_path) if conn_path.exists() else None
    flow = load_flow_file(path, connections)
    return export_appflow(flow, str(path), connections or {})


def export_appflow(flow: FlowSpec, file: str, connections: dict[str, ConnectionSpec]) -> Conversion:
    """The flow as a CreateFlow request, checked against botocore's appflow model; what AppFlow
    cannot express is listed, never dropped silently."""
    exporter = _Exporter(flow, file, connections)
    request = exporter.request()
    found = model.check(request, model.request_shape())
    if found:
        raise FlowFileError(
            [
                Problem(file, "", f"the CreateFlow request would be invalid at {path}: {message}")
                for path, message in found
            ]
        )
    return Conversion(request, exporter.not_carried, exporter.notes)


class _Exporter:
    def __init__(self, flow: FlowSpec, file: str, connections: dict[str, ConnectionSpec]):
        self.flow, self.file, self.connections = flow, file, connections
        self.not_carried: list[str] = []
        self.notes: list[str] = []
        self.channel_task: int | None = None  # Slack: the filter that is AppFlow's object

    def skip(self, path: str, why: str) -> None:
        self.not_carried.append(f"{path}: {why}")

    def fail(self, path: str, message: str) -> FlowFileError:
        return FlowFileError.single(self.file, path, message)

    def request(self) -> dict:
        flow = self.flow
        kind = flow.source.connector or getattr(
            self.connections.get(flow.source.connection), "connector", None
        )
        if kind is None:
            raise FlowFileError.single(
                self.file,
                "source.connector",
                "cannot tell the source's "
                "connector: set source.connector, or define the connection "
                f"in {CONNECTIONS_FILE}",
            )
        if kind == "google_analytics":
            raise self.fail(
                "source.connection",
                "AppFlow's Googleanalytics connector reads Universal Analytics views, which Google "
                "no longer serves, and its Google Analytics 4 connector is a managed custom "
                "connector whose report entity names a flow file does not hold: create that "
                "AppFlow flow in the AppFlow console",
            )
        if kind in APPFLOW_SOURCES:
            connector_type, self.key = APPFLOW_SOURCES[kind]
            props_key = self.key
        elif kind in S3_SOURCE:  # objects under an S3 prefix
            connector_type = self.key = props_key = "S3"
        else:
            connector_type = _named_like(kind, model.enum("ConnectorType"))
            self.key = _named_like(kind, model.members("ConnectorOperator"))
            props_key = _named_like(kind, model.members("SourceConnectorProperties"))
        if not (connector_type and self.key and props_key):
            raise FlowFileError.single(
                self.file, "source.connection", f"AppFlow has no {kind} source"
            )
        request: dict[str, Any] = {"flowName": flow.name}
        description = re.sub(r"[^\w!@#\-.?,\s]", "", flow.description)[:2048]
        if description != flow.description:
            self.notes.append("description: characters AppFlow does not allow were left out")
        if description:
            request["description"] = description
        request["triggerConfig"] = self.trigger()
        source: dict[str, Any] = {
            "connectorType": connector_type,
            "connectorProfileName": flow.source.connection,
            "sourceConnectorProperties": {props_key: self.source_properties(kind)},
        }
        if kind in S3_SOURCE:  # S3 uses the account's own access: no connector profile
            del source["connectorProfileName"]
        if flow.source.include_deleted:
            if props_key == "Salesforce":
                source["sourceConnectorProperties"][props_key]["includeDeletedRecords"] = True
            else:
                self.skip("source.include_deleted", f"AppFlow reads no deleted {kind} records")
        if flow.source.incremental and flow.source.incremental.lookback:
            self.skip("source.incremental.lookback", "AppFlow re-reads no window before its mark")
        if flow.partitions:
            self.skip("partitions", "AppFlow has no partitions or backfills")
        if flow.source.incremental and kind in S3_SOURCE:
            self.skip("source.incremental", "AppFlow's S3 source has no incremental pull: each "
                      "run reads every object under the prefix")  # fmt: skip
        elif flow.source.incremental:
            source["incrementalPullConfig"] = {
                "datetimeTypeFieldName": flow.source.incremental.cursor_field
            }
        request["sourceFlowConfig"] = source
        request["destinationFlowConfigList"] = self.destination(request)
        request["tasks"] = self.tasks()
        if flow.source.page_size and kind != "sap_odata":
            self.skip("source.page_size", "AppFlow sizes its own pages")
        if getattr(flow.source, "mask_at_source", False):
            self.skip("source.mask_at_source", "AppFlow masks in its own pipeline; no such option")
        if flow.owners:
            self.skip("owners", "AppFlow has no owners; tag the flow if you need them there")
        return request

    def source_properties(self, kind: str) -> dict:
        src = self.flow.source
        if kind in S3_SOURCE:
            return self.s3_source_properties()
        if kind == "sap_odata":
            props: dict[str, Any] = {"objectPath": self.sap_object_path()}
            if src.page_size and src.page_size <= SAP_MAX_PAGE:
                props["paginationConfig"] = {"maxPageSize": src.page_size}
            elif src.page_size:
                self.skip("source.page_size", f"{src.page_size}: AppFlow's SAP pages hold at "
                                              f"most {SAP_MAX_PAGE} records")  # fmt: skip
            return props
        if kind == "hubspot":
            self.notes.append(self.custom_note("sourceFlowConfig", src.connection, src.object))
            return {"entityName": src.object}
        if kind == "slack":
            return {"object": f"conversations/{self.slack_channel()}"}
        return {"object": src.object}

    def s3_source_properties(self) -> dict:
        """AppFlow's S3 source: the bucket and prefix of the source's object, CSV or JSON
        Lines (it reads no Parquet)."""
        src = self.flow.source
        file_type = {"csv": "CSV", "jsonl": "JSON"}.get(src.format or "parquet")
        if file_type is None:
            raise self.fail("source.format", f"AppFlow's S3 source reads CSV and JSON Lines, "
                                             f"not {src.format or 'parquet'}")  # fmt: skip
        bucket, _, prefix = src.object.partition("/")
        props: dict[str, Any] = {"bucketName": bucket}
        if prefix:
            props["bucketPrefix"] = prefix
        return props | {"s3InputFormatConfig": {"s3InputFileType": file_type}}

    def custom_note(self, path: str, connection: str, entity: str) -> str:
        return (
            f"{path}: AppFlow's HubSpot connector is a managed custom connector (connectorType "
            f"CustomConnector), here on connector profile '{connection}': check that its entity "
            f"for '{entity}' has that name (aws appflow list-connector-entities "
            f"--connector-profile-name {connection})"
        )

    def sap_object_path(self) -> str:
        """AppFlow's objectPath: the path of the connection's service_url, then the entity set."""
        src = self.flow.source
        conn = self.connections.get(src.connection)
        url = conn.settings.get("service_url") if conn else None
        if url is None:
            raise self.fail(
                "source.connection",
                f"needs service_url in {CONNECTIONS_FILE}: AppFlow's objectPath is its path and "
                "the entity set",
            )
        try:
            url = resolve(url, f"{CONNECTIONS_FILE}: {src.connection}.service_url")
        except MissingEnvironmentVariable as exc:
            raise self.fail("source.connection", str(exc)) from None
        return f"{urlparse(url).path.rstrip('/')}/{src.object}"

    def slack_channel(self) -> str:
        """AppFlow's Slack object is one conversation: the leading channel filter names it."""
        src = self.flow.source
        if src.object != "messages":
            raise self.fail(
                "source.object",
                f"'{src.object}': Slack flows export as a conversation's messages (AppFlow's "
                "object conversations/<channel id>) only",
            )
        for i, task in enumerate(self.flow.tasks):
            if task_kind(task) != "filter":
                break
            spec = self.flow.task_specs[i]
            if (spec.field, spec.operator) == ("channel", "equal_to") and isinstance(
                spec.value, str
            ):
                self.channel_task = i
                return spec.value
        raise self.fail(
            "tasks",
            "AppFlow's Slack source reads one conversation (object conversations/<channel id>): "
            "start the tasks with filter: {field: channel, operator: equal_to, value: <channel id>}",
        )

    def trigger(self) -> dict:
        trigger, incremental = self.flow.trigger, self.flow.source.incremental
        if not isinstance(trigger, Schedule):
            dumped = _TRIGGER.dump_python(trigger)
            if isinstance(dumped, dict) and "event" in dumped:
                return {"triggerType": "Event"}
            if incremental:
                self.skip(
                    "source.incremental",
                    "AppFlow pulls incrementally only on a schedule: "
                    "each on-demand run reads everything",
                )
            return {"triggerType": "OnDemand"}
        text = trigger.schedule.strip()
        expression = text if RATE.fullmatch(text) else _cron6(text)
        if expression is None:
            self.skip(
                "trigger.schedule",
                f"'{text}' restricts both day of month and day of week, "
                "which AppFlow's cron cannot; exported as OnDemand",
            )
            return {"triggerType": "OnDemand"}
        scheduled: dict[str, Any] = {
            "scheduleExpression": expression,
            "dataPullMode": "Incremental" if incremental else "Complete",
            "timezone": trigger.timezone,
        }
        if incremental and isinstance(incremental.start, datetime):
            scheduled["firstExecutionFrom"] = incremental.start.isoformat()
        elif incremental and incremental.start == "all":
            self.skip(
                "source.incremental.start",
                "all: AppFlow's first run pulls the past 30 days unless firstExecutionFrom is "
                "set; set it to the date of your oldest record",
            )
        if trigger.start:
            scheduled["scheduleStartTime"] = trigger.start.isoformat()
        if trigger.offset_minutes:
            scheduled["scheduleOffset"] = trigger.offset_minutes * 60  # AppFlow counts seconds
        if trigger.status == "on":
            self.notes.append(
                "trigger.status: on: run `aws appflow start-flow` to activate the schedule"
            )
        return {"triggerType": "Scheduled", "triggerProperties": {"Scheduled": scheduled}}

    def destination(self, request: dict) -> list[dict]:
        dest, flow = self.flow.destination, self.flow
        if dest.write != "append" and dest.connector in ("s3", "redshift", "eventbridge"):
            self.skip(
                "destination.write", f"{dest.write}: AppFlow only adds records to {dest.connector}"
            )
        if dest.s3 is not None:
            return [
                {"connectorType": "S3", "destinationConnectorProperties": {"S3": self.s3(request)}}
            ]
        if dest.redshift is not None:
            rs = dest.redshift
            settings = self.connections.get(rs.connection)
            bucket = settings.settings.get("staging_bucket") if settings else None
            if bucket is None:
                raise FlowFileError.single(
                    self.file,
                    "destination.redshift.connection",
                    f"needs staging_bucket in {CONNECTIONS_FILE}: it is "
                    "AppFlow's intermediateBucketName",
                )
            try:
                bucket = resolve(bucket, f"{CONNECTIONS_FILE}: {rs.connection}.staging_bucket")
            except MissingEnvironmentVariable as exc:
                raise FlowFileError.single(
                    self.file, "destination.redshift.connection", str(exc)
                ) from None
            props = {
                "object": f"{rs.db_schema}.{rs.table or flow.name}",
                "intermediateBucketName": bucket,
            }
            return [
                {
                    "connectorType": "Redshift",
                    "connectorProfileName": rs.connection,
                    "destinationConnectorProperties": {"Redshift": props},
                }
            ]
        if dest.eventbridge is not None:
            self.skip(
                "destination.eventbridge",
                "AppFlow sends to a partner event source it "
                "creates: object is the event bus here, and AppFlow sets the events' source "
                "and detail-type itself",
            )
            props = {"object": dest.eventbridge.event_bus}
            return [
                {
                    "connectorType": "EventBridge",
                    "destinationConnectorProperties": {"EventBridge": props},
                }
            ]
        if dest.salesforce is not None:
            return [self.salesforce()]
        if dest.zendesk is not None:
            props = {"object": dest.zendesk.object, **_saas_write(dest.write, ["external_id"])}
            return [
                {
                    "connectorType": "Zendesk",
                    "connectorProfileName": dest.zendesk.connection,
                    "destinationConnectorProperties": {"Zendesk": props},
                }
            ]
        if dest.hubspot is not None:
            hs = dest.hubspot
            ids = [hs.id_property or (dest.key or [""])[0]]
            props = {"entityName": hs.object, **_saas_write(dest.write, ids)}
            self.notes.append(self.custom_note("destination.hubspot", hs.connection, hs.object))
            return [
                {
                    "connectorType": "CustomConnector",
                    "connectorProfileName": hs.connection,
                    "destinationConnectorProperties": {"CustomConnector": props},
                }
            ]
        self.skip(
            "destination.connector",
            f"{dest.connector}: AppFlow has no such destination; "
            "add one to destinationFlowConfigList by hand",
        )
        return []

    def salesforce(self) -> dict:
        dest = self.flow.destination
        sf = dest.salesforce
        assert sf is not None
        props: dict[str, Any] = {"object": sf.object, "writeOperationType": dest.write.upper()}
        if dest.write == "upsert":
            props["idFieldNames"] = [sf.external_id_field or (dest.key or [""])[0]]
        elif dest.write in ("update", "delete"):
            props["idFieldNames"] = ["Id"]  # records are matched by their Salesforce Id
        props["dataTransferApi"] = SF_APIS[sf.api]
        if sf.bulk_threshold != BULK_THRESHOLD:
            self.skip(
                "destination.salesforce.bulk_threshold",
                f"{sf.bulk_threshold}: AppFlow's AUTOMATIC switches to Bulk API 2.0 at "
                f"{BULK_THRESHOLD} records",
            )
        return {
            "connectorType": "Salesforce",
            "connectorProfileName": sf.connection,
            "destinationConnectorProperties": {"Salesforce": props},
        }

    def s3(self, request: dict) -> dict:
        s3 = self.flow.destination.s3
        assert s3 is not None
        file_type = {"parquet": "PARQUET", "csv": "CSV", "jsonl": "JSON"}.get(s3.format)
        if file_type is None:
            self.skip(
                "destination.s3.format", f"{s3.format}: AppFlow writes files, exported as PARQUET"
            )
        output: dict[str, Any] = {"fileType": file_type or "PARQUET"}
        dates = [p for p in s3.partitioning if p != "run_id"]
        if dates:
            if dates == [d.lower() for d in DATE_LEVELS[: len(dates)]]:
                output["prefixConfig"] = {"prefixType": "PATH", "prefixFormat": dates[-1].upper()}
            else:
                self.skip(
                    "destination.s3.partitioning",
                    f"{dates}: AppFlow's date folders run year, month, day, hour from the top",
                )
        if "run_id" in s3.partitioning:
            output.setdefault("prefixConfig", {})["pathPrefixHierarchy"] = ["EXECUTION_ID"]
        output["aggregationConfig"] = (
            {"aggregationType": "None", "targetFileSize": s3.file_size_mb}
            if s3.file_size_mb
            else {"aggregationType": "SingleFile"}
        )
        key = s3.encryption.kms_key_id if s3.encryption else None
        if key and re.fullmatch(r"arn:aws:kms:.*:[0-9]+:.*", key):
            request["kmsArn"] = key
        elif s3.encryption:
            self.skip(
                "destination.s3.encryption",
                f"{key or s3.encryption.type}: AppFlow takes a "
                "KMS key ARN (kmsArn), else its own key",
            )
        if s3.glue:
            self.skip(
                "destination.s3.glue",
                "AppFlow's Glue catalog needs an IAM role ARN; add metadataCatalogConfig by hand",
            )
        return {
            "bucketName": s3.bucket,
            "bucketPrefix": s3.prefix or self.flow.name,
            "s3OutputFormatConfig": output,
        }

    def tasks(self) -> list[dict]:
        """Flow-file tasks run in order on current names; AppFlow's name source fields and a Map per
        written field sends it to the destination (renamed, or cast) at the end."""
        flow = self.flow
        fields = list(flow.source.fields) if flow.source.fields else None
        self.origin: dict[str, str] = {}  # current name -> AppFlow source field (or result)
        self.casts: dict[str, str] = {}
        self.made: set[str] = set()  # results of Arithmetic / Merge
        self.lost: set[str] = set()  # fields made by tasks AppFlow cannot run
        self.excluded: list[str] = []
        self.available = list(fields) if fields else None
        out: list[dict] = []
        if fields:
            out.append(self.task("Filter", fields, "PROJECTION"))
        for i, task in enumerate(flow.tasks):
            if i == self.channel_task:
                continue  # the Slack conversation: AppFlow's object, not a filter
            kind = task_kind(task)
            spec = task.model_dump(by_alias=True, exclude_none=True)[kind]
            made = self.export_task(f"tasks[{i}].{kind}", kind, spec)
            if made is not None:
                out.append(made)
        if self.available is not None:
            for name in self.available:
                if name not in self.lost:
                    out.append(self.map_task(name))
            return out
        explicit = [n for n in dict.fromkeys([*self.origin, *self.casts]) if n not in self.lost]
        exclude = self.excluded + [self.origin.get(n, n) for n in explicit if n not in self.made]
        out.append(
            self.task("Map_all", [], "NO_OP", {"EXCLUDE_SOURCE_FIELDS_LIST": json.dumps(exclude)})
        )
        out += [self.map_task(name) for name in explicit]
        return out

    def task(
        self,
        kind: str,
        fields: list[str],
        operator: str,
        props: dict | None = None,
        target: str | None = None,
    ) -> dict:
        task: dict[str, Any] = {
            "taskType": kind,
            "sourceFields": fields,
            "connectorOperator": {self.key: operator},
        }
        if target:
            task["destinationField"] = target
        if props:
            task["taskProperties"] = props
        return task

    def map_task(self, name: str) -> dict:
        cast = self.casts.get(name)
        props = {"DESTINATION_DATA_TYPE": EXPORT_TYPES[cast]} if cast else None
        return self.task("Map", [self.origin.get(name, name)], "NO_OP", props, name)

    def supported(self, path: str, operator: str) -> bool:
        if operator in model.enum("ConnectorOperator", self.key):
            return True
        self.skip(path, f"AppFlow's {self.key} connector has no {operator} operator")
        return False

    def export_task(self, path: str, kind: str, spec: dict) -> dict | None:
        src = lambda name: self.origin.get(name, name)  # noqa: E731
        if kind == "map":
            for old, target in spec.items():
                new = target if isinstance(target, str) else target.get("to") or old
                self.origin[new] = self.origin.pop(old, old)
                if isinstance(target, dict) and target.get("type"):
                    self.casts[new] = target["type"]
                self._rename(old, new)
            return None
        if kind == "cast":
            self.casts[spec["field"]] = spec["type"]
            return None
        if kind == "map_all":
            self.excluded += [src(n) for n in spec.get("exclude", [])]
            if self.available is not None:
                self.available = [n for n in self.available if n not in spec.get("exclude", [])]
            return None
        if kind == "filter":
            return self.filter(path, src(spec["field"]), spec["operator"], spec.get("value"))
        if kind == "mask" and spec["how"] in ("all", "first_n", "last_n"):
            operator = {v: k for k, v in MASKS.items()}[spec["how"]]
            props = {"MASK_VALUE": spec.get("char", "*")}
            if "n" in spec:
                props["MASK_LENGTH"] = str(spec["n"])
            return (
                self.task("Mask", [src(spec["field"])], operator, props)
                if self.supported(path, operator)
                else None
            )
        if kind == "validate":
            operator = {v: k for k, v in CHECKS.items()}[spec["check"]]
            action = {"drop": "DropRecord", "fail": "TerminateFlow"}.get(spec["on_failure"])
            if action is None:
                self.skip(
                    f"{path}.on_failure",
                    f"{spec['on_failure']}: AppFlow cannot keep failed "
                    "records; exported as DropRecord, which drops them",
                )
            props = {"VALIDATION_ACTION": action or "DropRecord"}
            return (
                self.task("Validate", [src(spec["field"])], operator, props)
                if self.supported(path, operator)
                else None
            )
        if kind == "truncate":
            return self.task(
                "Truncate", [src(spec["field"])], "NO_OP", {"TRUNCATE_LENGTH": str(spec["length"])}
            )
        if kind == "arithmetic" and all(isinstance(o, str) for o in spec["operands"]):
            operands = [src(o) for o in spec["operands"]]
            operator = {v: k for k, v in ARITHMETIC.items()}[spec["operator"]]
            self.made_field(spec["field"])
            props = {"MATH_OPERATION_FIELDS_ORDER": ",".join(operands)}
            return self.task("Arithmetic", operands, operator, props, spec["field"])
        if kind == "merge":
            names = re.findall(r"(?<!\{)\{([^{}]+)\}", spec["format"])
            fmt = re.sub(r"(?<!\{)\{([^{}]+)\}", lambda m: "${" + src(m[1]) + "}", spec["format"])
            fmt = fmt.replace("{{", "{").replace("}}", "}")
            self.made_field(spec["field"])
            return self.task(
                "Merge", [src(n) for n in names], "NO_OP", {"CONCAT_FORMAT": fmt}, spec["field"]
            )
        if kind == "mask":
            why = f"mask {spec['how']}: AppFlow masks with a character only (all, first_n, last_n)"
        elif kind == "arithmetic":
            why = "a number operand: AppFlow's Arithmetic takes two fields"
        else:
            why = f"AppFlow has no {kind} task"
        self.skip(path, why)
        made = spec.get("into") or (
            spec.get("field") if kind in ("compute", "arithmetic") else None
        )
        if made and self.available is not None and made not in self.available:
            self.available.append(made)
            self.lost.add(made)
        return None

    def _rename(self, old: str, new: str) -> None:
        for names in (self.available, self.excluded):
            if names is not None and old in names and old != new:
                names[names.index(old)] = new
        if old in self.casts and old != new:
            self.casts[new] = self.casts.pop(old)

    def made_field(self, name: str) -> None:
        self.origin[name] = name
        self.made.add(name)
        if self.available is not None and name not in self.available:
            self.available.append(name)

    def filter(self, path: str, name: str, operator: str, value: Any) -> dict | None:
        ours = {v: k for k, v in FILTERS.items()} | {v: k for k, v in LIST_FILTERS.items()}
        appflow = ours.get(operator)
        if appflow is None:
            self.skip(path, f"{operator}: AppFlow's filters cannot test for null")
            return None
        if not self.supported(path, appflow):
            return None
        sample = value[0] if isinstance(value, list) else value
        props = {"DATA_TYPE": _data_type(sample)}
        if operator == "between":
            props["LOWER_BOUND"], props["UPPER_BOUND"] = (_text(v) for v in value)
        elif isinstance(value, list):
            props["VALUES"] = ",".join(_text(v) for v in value)
        else:
            props["VALUE"] = _text(value)
        return self.task("Filter", [name], appflow, props)


def _saas_write(write: str, ids: list[str]) -> dict:
    """A SaaS sink's insert or upsert (the only writes of zendesk and hubspot) as AppFlow's."""
    if write == "upsert":
        return {"writeOperationType": "UPSERT", "idFieldNames": ids}
    return {"writeOperationType": "INSERT"}


def _named_like(kind: str, names: list[str]) -> str | None:
    return next((n for n in names if n.lower() == kind.lower()), None)


def _data_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "double" if isinstance(value, float) else "int"
    if isinstance(value, datetime):
        return "datetime"
    return "date" if isinstance(value, date) else "string"


def _text(value: Any) -> str:
    """A filter value as AppFlow writes it: text, with dates in epoch milliseconds."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return str(int(moment.timestamp() * 1000))
    if isinstance(value, date):
        return str(int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000))
    return str(value)


def _cron6(text: str) -> str | None:
    """'m h dom mon dow' as AppFlow's cron(m h dom mon dow year), which wants '?' in one day field."""
    parts = text.split()
    if len(parts) != 5:
        return None
    minute, hour, dom, month, dow = parts
    if dow == "*":
        dow = "?"
    elif dom == "*":
        dom = "?"
        dow = re.sub(r"(?<![/\d])\d+", lambda m: str(int(m[0]) % 7 + 1), dow)
    else:
        return None  # cron ORs the two day fields; AppFlow's cannot restrict both
    return f"cron({minute} {hour} {dom} {month} {dow} *)"
