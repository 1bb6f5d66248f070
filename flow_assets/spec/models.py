"""Pydantic models of a flow file and of a named connection: strict, no unknown keys."""

from __future__ import annotations

import re
import string
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
ENV_REF = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}$")

Scalar = bool | int | float | datetime | date | str
DType = Literal["string", "integer", "float", "boolean", "date", "datetime"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


LOOKBACK = re.compile(r"^(\d+)\s*(minute|minutes|hour|hours|day|days)$", re.I)
_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}


class Incremental(StrictModel):
    """AppFlow's incremental pull: only records whose cursor field moved past the high-water mark."""

    cursor_field: str
    start: datetime | Literal["all"] | None = Field(
        None,
        description="Where the first run starts: a timestamp, or all (every record); without "
        "it the first run pulls the last 30 days, as AppFlow does. Later runs continue from "
        "the cursor.",
    )
    lookback: timedelta | None = Field(
        None,
        description="Each run also re-reads this long before the high-water mark ('30 minutes', "
        "'2 hours', '1 day'), for records that arrive late; needs write: upsert.",
    )

    @field_validator("start", mode="before")
    @classmethod
    def _timestamp_or_all(cls, value: Any) -> Any:
        if not isinstance(value, str) or value == "all":
            return value
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"'{value}' is neither a timestamp such as 2024-01-01T00:00:00Z nor all"
            ) from None
        return value

    @field_validator("lookback", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or isinstance(value, timedelta):
            return value
        m = LOOKBACK.match(str(value).strip()) if isinstance(value, str) else None
        if m is None or int(m[1]) < 1:
            raise ValueError(
                f"'{value}' is not a duration such as '30 minutes', '2 hours', '1 day'"
            )
        return timedelta(seconds=int(m[1]) * _SECONDS[m[2].lower().rstrip("s")])


class Source(StrictModel):
    connection: str = Field(description="A connection named in flow_defs/connections.yaml.")
    connector: str | None = Field(None, description="Optional; must match the connection's.")
    object: str = Field(description="What to read; an S3 source (aws connection): bucket/prefix.")
    format: Literal["parquet", "csv", "jsonl"] | None = Field(
        None, description="S3 sources: the objects' file type; parquet when omitted."
    )
    fields: list[str] | None = Field(None, min_length=1, description="All fields when omitted.")
    incremental: Incremental | None = None
    page_size: int | None = Field(None, gt=0)
    mask_at_source: bool = Field(
        False,
        description="Apply the mask tasks while extracting: raw values are never stored, "
        "not even in the staging area. Masks then name source fields.",
    )
    include_deleted: bool = Field(
        False,
        description="Also read deleted records (Salesforce's queryAll); each record then "
        "carries the soft-delete flag _fb_deleted.",
    )

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, fields: list[str] | None) -> list[str] | None:
        if fields is not None:
            seen = {f for f in fields if fields.count(f) > 1}
            if seen:
                raise ValueError(f"listed twice: {sorted(seen)}")
        return fields


FilterOperator = Literal[
    "equal_to",
    "not_equal_to",
    "less_than",
    "less_than_or_equal_to",
    "greater_than",
    "greater_than_or_equal_to",
    "between",
    "contains",
    "in",
    "not_in",
    "is_null",
    "is_not_null",
]


class FilterSpec(StrictModel):
    field: str
    operator: FilterOperator
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> FilterSpec:
        op, value = self.operator, self.value
        if op in ("is_null", "is_not_null"):
            if value is not None:
                raise ValueError(f"operator '{op}' takes no value")
        elif op == "between":
            if not (isinstance(value, list) and len(value) == 2):
                raise ValueError("operator 'between' needs value: [low, high]")
        elif op in ("in", "not_in"):
            if not (isinstance(value, list) and value):
                raise ValueError(f"operator '{op}' needs value: a non-empty list")
        elif value is None or isinstance(value, list):
            raise ValueError(f"operator '{op}' needs one value")
        return self


class MapTarget(StrictModel):
    to: str | None = Field(None, description="New name; the old one when omitted.")
    type: DType | None = Field(None, description="Cast to this type; failures are rejected.")


class ComputeSpec(StrictModel):
    field: str
    expression: str = Field(
        description="A Polars SQL expression over the fields, e.g. 'Amount * 2'."
    )


class FormatSpec(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str
    as_: Literal["phone_e164", "email", "trim", "lower", "upper", "date"] = Field(alias="as")
    into: str | None = Field(None, description="Write to a new field; in place when omitted.")
    country_code: str = Field("1", pattern=r"^\d{1,3}$", description="For national phone numbers.")
    formats: list[str] | None = Field(
        None,
        min_length=1,
        description="For date: strftime formats such as '%m/%d/%Y', tried in order; "
        "the first that parses the whole value wins.",
    )
    on_invalid: Literal["null", "quarantine"] = Field(
        "null", description="What a value that cannot be formatted becomes."
    )

    @model_validator(mode="after")
    def _formats_fit_as(self) -> FormatSpec:
        if self.as_ == "date" and not self.formats:
            raise ValueError("format 'date' needs formats: ['%m/%d/%Y', ...], tried in order")
        if self.as_ != "date" and self.formats:
            raise ValueError(f"format '{self.as_}' takes no formats (only 'date' does)")
        return self


def _is_secret_ref(value: str) -> bool:
    """`${NAME}` without a default: a secret comes from the environment, never from the file."""
    m = ENV_REF.match(value)
    return bool(m) and m["default"] is None


class MaskSpec(StrictModel):
    field: str
    how: Literal["all", "first_n", "last_n", "sha256", "hmac"]
    n: int | None = Field(None, gt=0)
    char: str = Field("*", min_length=1, max_length=1)
    salt: str | None = Field(
        None, description="For sha256: an ${ENV_VAR} reference, never a literal."
    )
    key: str | None = Field(
        None,
        description="For hmac (required): an ${ENV_VAR} reference, never a literal. The token "
        "is HMAC-SHA256 (hex) of the value, so the same key gives the same token in every flow.",
    )

    @model_validator(mode="after")
    def _n_fits_how(self) -> MaskSpec:
        if self.how in ("first_n", "last_n") and self.n is None:
            raise ValueError(f"mask '{self.how}' needs n")
        if self.how in ("all", "sha256", "hmac") and self.n is not None:
            raise ValueError(f"mask '{self.how}' takes no n")
        for name in ("salt", "key"):
            value = getattr(self, name)
            if value is not None and not _is_secret_ref(value):
                raise ValueError(
                    f"{name} is a secret: write it as ${{ENV_VAR}}, never as a literal"
                )
        if self.salt is not None and self.how != "sha256":
            raise ValueError(f"mask '{self.how}' takes no salt (only sha256 does)")
        if self.how == "hmac" and self.key is None:
            raise ValueError("mask 'hmac' needs key: ${ENV_VAR}")
        if self.key is not None and self.how != "hmac":
            raise ValueError(f"mask '{self.how}' takes no key (only hmac does)")
        return self

    @property
    def secret(self) -> tuple[str, str] | None:
        """('salt' or 'key', its ${ENV_VAR} reference), if this mask has a secret."""
        if self.salt is not None:
            return "salt", self.salt
        return ("key", self.key) if self.key is not None else None


class ValidateSpec(StrictModel):
    field: str
    check: Literal["non_null", "non_negative", "non_zero", "numeric"]
    on_failure: Literal["quarantine", "drop", "fail"] = "quarantine"


class MapAllSpec(StrictModel):
    """AppFlow's Map_all: every field passes through, but the excluded ones."""

    exclude: list[str] = Field(
        default_factory=list, description="Fields removed from the records; each must exist."
    )


class ArithmeticSpec(StrictModel):
    """AppFlow's Arithmetic (ADDITION, SUBTRACTION, MULTIPLICATION, DIVISION) of two operands."""

    field: str = Field(description="The result: a new field, or an existing one it replaces.")
    operator: Literal["add", "subtract", "multiply", "divide"]
    operands: list[str | int | float] = Field(
        min_length=2,
        max_length=2,
        description="[A, B], each a numeric field's name or a number. A null operand gives "
        "null; division by zero gives null, never infinity or an error.",
    )

    @field_validator("operands", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, list) and any(isinstance(v, bool) for v in value):
            raise ValueError("an operand is a field name or a number, not true or false")
        return value

    @model_validator(mode="after")
    def _one_field_at_least(self) -> ArithmeticSpec:
        if not self.fields:
            raise ValueError("at least one operand is a field; for a constant use compute")
        return self

    @property
    def fields(self) -> list[str]:
        return [o for o in self.operands if isinstance(o, str)]


class MergeSpec(StrictModel):
    """AppFlow's Merge (CONCAT_FORMAT): fields and text combined into one string field."""

    field: str = Field(description="The merged field: new, or an existing one it replaces.")
    format: str = Field(
        description="Text with fields in braces, e.g. '{FirstName} {LastName}'; '{{' and '}}' "
        "are literal braces. A null field contributes an empty string."
    )

    @field_validator("format")
    @classmethod
    def _names_fields(cls, value: str) -> str:
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"{exc}; write '{{{{' or '}}}}' for a literal brace") from None
        for _, name, spec, conversion in parsed:
            if name is not None and (not name or spec or conversion):
                raise ValueError("name each field as {Field}, without ':' or '!' inside braces")
        if all(name is None for _, name, _, _ in parsed):
            raise ValueError("format names no field; write fields in braces: '{FirstName}'")
        return value

    @property
    def parts(self) -> list[tuple[str, str | None]]:
        """(literal text, field name or None) in order."""
        return [(text, name) for text, name, _, _ in string.Formatter().parse(self.format)]

    @property
    def fields(self) -> list[str]:
        return [name for _, name in self.parts if name is not None]


class TruncateSpec(StrictModel):
    """AppFlow's Truncate (TRUNCATE_LENGTH): a string field cut to its first characters."""

    field: str
    length: int = Field(gt=0, description="Characters kept; shorter strings are unchanged.")


class CastSpec(StrictModel):
    field: str
    type: DType = Field(description="Values that cannot be cast are rejected with the reason.")


class MapTask(StrictModel):
    map: dict[str, str | MapTarget] = Field(min_length=1)


class FilterTask(StrictModel):
    filter: FilterSpec


class ComputeTask(StrictModel):
    compute: ComputeSpec


class FormatTask(StrictModel):
    format: FormatSpec


class MaskTask(StrictModel):
    mask: MaskSpec


class ValidateTask(StrictModel):
    validate_: ValidateSpec = Field(alias="validate")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MapAllTask(StrictModel):
    map_all: MapAllSpec = Field(default_factory=MapAllSpec)

    @field_validator("map_all", mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        return {} if value is None else value  # `- map_all:` with nothing after it


class ArithmeticTask(StrictModel):
    arithmetic: ArithmeticSpec


class MergeTask(StrictModel):
    merge: MergeSpec


class TruncateTask(StrictModel):
    truncate: TruncateSpec


class CastTask(StrictModel):
    cast: CastSpec


TASK_KINDS = (
    "map",
    "map_all",
    "filter",
    "compute",
    "arithmetic",
    "merge",
    "truncate",
    "cast",
    "format",
    "mask",
    "validate",
)


def task_kind(task: BaseModel) -> str:
    """'filter', 'map', ... as written in the flow file."""
    return next(iter(type(task).model_fields)).rstrip("_")


def _task_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))
    if isinstance(value, BaseModel):
        return task_kind(value)
    return None


Task = Annotated[
    Annotated[MapTask, Tag("map")]
    | Annotated[MapAllTask, Tag("map_all")]
    | Annotated[FilterTask, Tag("filter")]
    | Annotated[ComputeTask, Tag("compute")]
    | Annotated[ArithmeticTask, Tag("arithmetic")]
    | Annotated[MergeTask, Tag("merge")]
    | Annotated[TruncateTask, Tag("truncate")]
    | Annotated[CastTask, Tag("cast")]
    | Annotated[FormatTask, Tag("format")]
    | Annotated[MaskTask, Tag("mask")]
    | Annotated[ValidateTask, Tag("validate")],
    Discriminator(
        _task_kind,
        custom_error_type="unknown_task",
        custom_error_message="each task is one of: " + ", ".join(TASK_KINDS),
    ),
]


class S3Encryption(StrictModel):
    type: Literal["sse-s3", "sse-kms"] = "sse-kms"
    kms_key_id: str | None = Field(
        None, description="Key id, ARN or alias/NAME; the bucket's default KMS key when omitted."
    )


class GlueTable(StrictModel):
    """Register the S3 data in the Glue Data Catalog, as AppFlow's catalog option does."""

    database: str = Field(pattern=r"^[a-z0-9_]{1,255}$")
    table: str | None = Field(None, pattern=r"^[a-z0-9_]{1,255}$", description="The flow name.")


class S3Settings(StrictModel):
    """AppFlow's S3 destination: bucket, prefix, file type, prefix layout and aggregation."""

    connection: str = Field(description="An aws connection in connections.yaml.")
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field("", description="Key prefix; the flow name when empty.")
    format: Literal["parquet", "csv", "jsonl", "delta"] = Field(
        "parquet", description="delta: a Delta Lake table (deltalake), merged by key on upsert."
    )
    partitioning: list[Literal["year", "month", "day", "hour", "run_id"]] = Field(
        default_factory=list, description="Folders under the prefix, e.g. [year, month, day]."
    )
    file_size_mb: int | None = Field(
        None, gt=0, description="Files of about this size; one file per run when omitted."
    )
    encryption: S3Encryption | None = None
    glue: GlueTable | None = Field(None, description="Create or update a Glue table after writes.")

    @model_validator(mode="after")
    def _delta_is_one_table(self) -> S3Settings:
        if self.format == "delta":
            for name in ("partitioning", "file_size_mb", "glue"):
                if getattr(self, name):
                    raise ValueError(
                        f"format delta keeps one Delta table under the prefix: remove {name}"
                    )
        return self


class DynamoDBSettings(StrictModel):
    """Items keyed by the destination's key (partition key, and sort key if there are two)."""

    connection: str = Field(description="An aws connection in connections.yaml.")
    table: str = Field(pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    create_table: bool = Field(True, description="Create it (on-demand billing) if missing.")


class EventBridgeSettings(StrictModel):
    """One event per record, its detail the record as JSON."""

    connection: str = Field(description="An aws connection in connections.yaml.")
    event_bus: str = Field("default", description="The bus name or ARN.")
    source: str = Field(description="The events' Source, e.g. flowbridge.salesforce.")
    detail_type: str = Field(description="The events' DetailType, e.g. OpportunityChanged.")


class RedshiftSettings(StrictModel):
    """A table in a Redshift warehouse, loaded by COPY from staged Parquet and merged by key."""

    connection: str = Field(description="A redshift connection in connections.yaml.")
    db_schema: str = Field("public", alias="schema", pattern=r"^[A-Za-z_][A-Za-z0-9_$]*$")
    table: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_$]*$")
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


BULK_THRESHOLD = 1000  # AppFlow's AUTOMATIC: fewer records through REST, more through Bulk 2.0


class SalesforceSinkSettings(StrictModel):
    """Records written to a Salesforce object through sObject Collections, 200 a call, or, for
    large runs, Bulk API 2.0 ingest jobs (destinations/salesforce_bulk.py)."""

    connection: str = Field(description="A salesforce connection in connections.yaml.")
    object: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="e.g. Opportunity.")
    external_id_field: str | None = Field(
        None, description="write upsert: the external id field records are matched on; key[0]."
    )
    api: Literal["automatic", "rest", "bulk"] = Field(
        "automatic",
        description="AppFlow's dataTransferApi: automatic (AUTOMATIC) writes runs of fewer than "
        "bulk_threshold records through REST (sObject Collections) and larger ones through Bulk "
        "API 2.0; rest (REST_SYNC) and bulk (BULKV2) always use that API.",
    )
    bulk_threshold: int = Field(
        BULK_THRESHOLD, ge=1, description="api automatic: runs of this many records or more use "
        "Bulk API 2.0 (AppFlow's switch is at 1,000).",
    )  # fmt: skip

    @model_validator(mode="after")
    def _threshold_needs_automatic(self) -> SalesforceSinkSettings:
        # By value, not by fields set: the settings travel as JSON with every field written.
        if self.bulk_threshold != BULK_THRESHOLD and self.api != "automatic":
            always = "Bulk API 2.0" if self.api == "bulk" else "REST"
            raise ValueError(f"bulk_threshold is for api automatic; api {self.api} always uses "
                             f"{always}: drop one")  # fmt: skip
        return self


class HubSpotSinkSettings(StrictModel):
    """Records written to a HubSpot CRM object through its batch create / batch upsert API."""

    connection: str = Field(description="A hubspot connection in connections.yaml.")
    object: str = Field(
        pattern=r"^[A-Za-z0-9_]+$", description="contacts, companies, deals or a custom type."
    )
    id_property: str | None = Field(
        None, description="write upsert: the unique property records are matched on; key[0]."
    )


class ZendeskSinkSettings(StrictModel):
    """Tickets created, or created and updated by external_id, in Zendesk Support."""

    connection: str = Field(description="A zendesk connection in connections.yaml.")
    object: Literal["tickets"] = Field("tickets", description="What is written: tickets.")


DESTINATIONS = ("lake", "s3", "dynamodb", "eventbridge", "redshift", "salesforce", "hubspot",
                "zendesk")  # fmt: skip
# Destinations that take their settings from a block named like the connector.
SETTINGS_BLOCKS = ("s3", "dynamodb", "eventbridge", "redshift", "salesforce", "hubspot", "zendesk")
# SaaS apps written back to, and the writes each takes.
SAAS_WRITES = {
    "salesforce": ("insert", "upsert", "update", "delete"),
    "hubspot": ("insert", "upsert"),
    "zendesk": ("insert", "upsert"),
}


class Destination(StrictModel):
    connector: str = Field("lake", description="Where records go: lake (default) or s3.")
    write: Literal["append", "overwrite", "upsert", "insert", "update", "delete"] = Field(
        "append", description="insert, update and delete: SaaS destinations (SAAS_WRITES)."
    )
    key: list[str] | None = Field(None, min_length=1)
    table: str | None = Field(None, pattern=NAME_PATTERN, description="Defaults to the flow name.")
    s3: S3Settings | None = Field(None, description="Settings of connector s3.")
    dynamodb: DynamoDBSettings | None = Field(None, description="Settings of connector dynamodb.")
    eventbridge: EventBridgeSettings | None = Field(
        None, description="Settings of connector eventbridge."
    )
    redshift: RedshiftSettings | None = Field(None, description="Settings of connector redshift.")
    salesforce: SalesforceSinkSettings | None = Field(
        None, description="Settings of connector salesforce."
    )
    hubspot: HubSpotSinkSettings | None = Field(None, description="Settings of connector hubspot.")
    zendesk: ZendeskSinkSettings | None = Field(None, description="Settings of connector zendesk.")

    @property
    def settings(
        self,
    ) -> (
        S3Settings | DynamoDBSettings | EventBridgeSettings | RedshiftSettings
        | SalesforceSinkSettings | HubSpotSinkSettings | ZendeskSinkSettings | None
    ):  # fmt: skip
        """The connector's own block (s3:, dynamodb:, ...), if it has one."""
        return getattr(self, self.connector, None) if self.connector in SETTINGS_BLOCKS else None

    @model_validator(mode="after")
    def _settings_fit_connector(self) -> Destination:
        if self.write == "upsert" and not self.key:
            raise ValueError("write 'upsert' needs key: [field, ...]")
        for block in SETTINGS_BLOCKS:
            present = getattr(self, block) is not None
            if block == self.connector and not present:
                raise ValueError(f"connector '{block}' needs a {block}: block with its settings")
            if block != self.connector and present:
                raise ValueError(
                    f"a {block}: block belongs to connector {block}, not '{self.connector}'"
                )
        if self.s3 is not None and self.write == "upsert":
            if self.s3.format not in ("parquet", "delta"):
                raise ValueError(
                    f"write 'upsert' to s3 needs format parquet or delta, not {self.s3.format}: "
                    "records are merged with what was written before, read back with their types"
                )
            if self.s3.partitioning:
                raise ValueError(
                    "write 'upsert' to s3 keeps one table under the prefix: remove partitioning"
                )
        saas = SAAS_WRITES.get(self.connector)
        if saas is not None and self.write not in saas:
            raise ValueError(f"connector {self.connector} writes {', '.join(saas)}")
        if saas is None and self.write in ("insert", "update", "delete"):
            raise ValueError(f"write '{self.write}' is for connector salesforce; use append")
        if saas is not None and self.write == "upsert":
            matched = {
                "salesforce": ("its external id field", getattr(self.salesforce, "external_id_field", None)),
                "hubspot": ("its unique id property", getattr(self.hubspot, "id_property", None)),
                "zendesk": ("external_id", "external_id"),
            }[self.connector]  # fmt: skip
            what, field_name = matched
            if len(self.key or []) != 1 or (field_name is not None and field_name != self.key[0]):
                raise ValueError(f"write upsert to {self.connector} needs key: [{what}]")
        if self.connector == "dynamodb" and not (self.key and len(self.key) <= 2):
            raise ValueError("connector dynamodb needs key: [partition_key] or [partition, sort]")
        return self


def _yaml_on_off(value: Any) -> Any:
    """YAML 1.1 reads an unquoted on / off as true / false."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


# A trigger's status: whether its schedule or sensor starts running when the code loads.
OnOff = Annotated[Literal["on", "off"], BeforeValidator(_yaml_on_off)]


class Schedule(StrictModel):
    schedule: str = Field(description="cron ('0 6 * * *') or AppFlow's rate(N minutes|hours|days)")
    timezone: str = "UTC"
    status: OnOff = "off"
    start: datetime | None = Field(
        None,
        description="No run before this moment (AppFlow's scheduleStartTime); without a UTC "
        "offset it is read in the schedule's timezone.",
    )
    offset_minutes: int = Field(
        0,
        ge=0,
        description="Run this many minutes after each tick (AppFlow's scheduleOffset).",
    )

    @field_validator("start")
    @classmethod
    def _start_in_timezone(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        """A start without a UTC offset is a time in the schedule's timezone."""
        if value is None or value.tzinfo is not None:
            return value
        zone = info.data.get("timezone", "UTC")
        try:
            return value.replace(tzinfo=ZoneInfo(zone))
        except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(
                f"has no UTC offset and timezone '{zone}' is not an IANA time zone"
            ) from None


class Event(StrictModel):
    """Run when the source changes: a sensor polls the source's cheap change probe
    (source_changes), or lists the keys after the last one seen (new_objects, S3 sources)."""

    event: Literal["source_changes", "new_objects"]
    min_interval_minutes: int = Field(5, ge=1, description="Minutes between two polls at least.")
    status: OnOff = "off"


def _trigger_kind(value: Any) -> str:
    if isinstance(value, str):
        return "on_demand"
    if isinstance(value, Event) or (isinstance(value, dict) and "event" in value):
        return "event"
    return "schedule"


Trigger = Annotated[
    Annotated[Literal["on_demand"], Tag("on_demand")]
    | Annotated[Schedule, Tag("schedule")]
    | Annotated[Event, Tag("event")],
    Discriminator(_trigger_kind),
]


class ValidationModel(StrictModel):
    """A pandera model of your own, checked against every batch of records a run loads."""

    model: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:Name of a pandera.polars DataFrameModel or DataFrameSchema; "
        "modules are looked up in the flows folder first (flow_defs/checks.py -> checks:Name).",
    )
    on_failure: Literal["quarantine", "drop", "fail"] = "quarantine"


class Partitions(StrictModel):
    """Dagster time-window partitions on the cursor field: each partition pulls its window."""

    by: Literal["day", "hour"]
    start: datetime = Field(description="Start of the first partition, in UTC: 2024-01-01.")
    backfill: Literal["per_partition", "single_run"] = Field(
        "per_partition",
        description="A backfill runs each partition on its own, or the whole range in one run.",
    )

    @field_validator("start")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value

    @model_validator(mode="after")
    def _on_a_boundary(self) -> Partitions:
        t = self.start
        if t.minute or t.second or t.microsecond or (self.by == "day" and t.hour):
            unit = "a day (2024-01-01)" if self.by == "day" else "an hour (2024-01-01T05:00)"
            raise ValueError(f"start must be the start of {unit}")
        return self


class FailurePolicy(StrictModel):
    """What failures do: a failed step is tried again within its run; after `pause_after`
    failed runs in a row the schedule or sensor stops requesting runs and says why (AppFlow's
    flowErrorDeactivationThreshold) until a run succeeds."""

    retries: int = Field(0, ge=0, le=10, description="Extra attempts of a failed step.")
    retry_delay_seconds: int = Field(
        30, ge=0, le=3600, description="Wait before the first retry; it doubles after each."
    )
    pause_after: int | None = Field(
        None, ge=1, le=100, description="Failed runs in a row that pause the trigger."
    )


class FlowSpec(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    owners: list[str] = Field(default_factory=list)
    source: Source
    tasks: list[Task] = Field(default_factory=list)
    destination: Destination = Field(default_factory=Destination)
    trigger: Trigger = "on_demand"
    validation: ValidationModel | None = None
    partitions: Partitions | None = None
    failure_policy: FailurePolicy = Field(default_factory=FailurePolicy)

    @property
    def task_specs(self) -> list[BaseModel]:
        """The inner spec of each task (FilterSpec, MaskSpec...), in order."""
        return [getattr(t, next(iter(type(t).model_fields))) for t in self.tasks]


class ConnectionSpec(BaseModel):
    """A named connection; the connector validates its own settings (extra keys)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    connector: str

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
