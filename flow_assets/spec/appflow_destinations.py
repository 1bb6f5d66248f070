"""An AppFlow flow's destinationFlowConfigList as the flow file's destination: S3 (with its
partitioning and Glue), Redshift, EventBridge, Salesforce, Zendesk, HubSpot and the rest."""

from __future__ import annotations

import re
from typing import Any

from flow_assets.spec.appflow_import_base import ImportBase, normalise
from flow_assets.spec.appflow_model import join
from flow_assets.spec.appflow_tables import (
    AWS_CONNECTION,
    AWS_CONNECTORS,
    CONNECTORS,
    DATE_LEVELS,
    FILE_TYPES,
)


class DestinationImport(ImportBase):
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
