"""An AppFlow flow's sourceFlowConfig as the flow file's source: the connector's properties,
its objects, and the incremental pull."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from flow_assets.spec import appflow_model as model
from flow_assets.spec.appflow_import_base import ImportBase
from flow_assets.spec.appflow_model import join
from flow_assets.spec.appflow_tables import CONNECTORS, FILE_TYPES, OBJECTS, READABLE

# AppFlow's Slack object is one conversation; Flowbridge reads its messages with a channel filter.
SLACK_CONVERSATION = re.compile(r"conversations/(?P<channel>\S+)")


class SourceImport(ImportBase):
    # The Slack conversation the flow reads: flow() makes slack_filter(...) its first task.
    slack_channel: str | None = None

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
