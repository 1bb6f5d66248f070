"""The vocabulary AppFlow import and export share: connectors and their objects, filters,
masks, arithmetic, checks, file and data types, schedule patterns, and the Conversion each returns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

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
