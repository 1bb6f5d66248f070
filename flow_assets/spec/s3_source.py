"""Flows whose source is S3 (an aws connection): the object is `bucket/prefix`, and the
object-key cursor reads only objects whose key sorts after the last one read."""

from __future__ import annotations

import re
from datetime import datetime

from flow_assets.spec.errors import Problem, ProblemList
from flow_assets.spec.models import ConnectionSpec, Event, FlowSpec

S3_CONNECTOR = "aws"  # an aws connection as a flow's source reads S3 objects
S3_ALIAS = "s3"  # what AppFlow (and its importer) call that source
# Every record of an S3 source carries the key of the object it came from; as the incremental
# cursor field it makes each run read only the objects after the last one read.
OBJECT_KEY = "_fb_object_key"
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # as destination.s3.bucket


def split_object(name: str) -> tuple[str, str]:
    """'bucket/orders/2024' -> ('bucket', 'orders/2024/'): the prefix is a folder, as AppFlow's
    bucketPrefix and the S3 destination's prefix are; '' for the whole bucket."""
    bucket, _, prefix = name.strip("/").partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def names_of(connection: ConnectionSpec) -> tuple[str, ...]:
    """What source.connector may say for this connection: its connector, and s3 for aws."""
    kind = connection.connector
    return (kind, S3_ALIAS) if kind == S3_CONNECTOR else (kind,)


def by_object_key(flow: FlowSpec) -> bool:
    """Whether the flow's incremental cursor is the object key (an S3 source's StartAfter)."""
    incremental = flow.source.incremental
    return incremental is not None and incremental.cursor_field == OBJECT_KEY


def s3_source_problems(
    flow: FlowSpec, file: str, connections: dict[str, ConnectionSpec] | None
) -> list[Problem]:
    """The source's format, object and cursor fit an S3 source; an S3 trigger, an S3 source."""
    problems = ProblemList(_object_key_problems(flow, file))
    src, trigger = flow.source, flow.trigger
    connection = (connections or {}).get(src.connection)
    from_s3 = connection is not None and connection.connector == S3_CONNECTOR
    if connection is None:
        return problems  # the connection's own problem is reported elsewhere
    if src.format is not None and not from_s3:
        problems.add(
            file, "source.format",
            f"only an S3 source (an {S3_CONNECTOR} connection) reads files; connection "
            f"'{src.connection}' is {connection.connector}: remove format",
        )  # fmt: skip
    if src.incremental and from_s3 != by_object_key(flow):
        problems.add(
            file, "source.incremental.cursor_field",
            f"an S3 source reads new objects by key: write cursor_field: {OBJECT_KEY}"
            if from_s3
            else f"{OBJECT_KEY} is the object key of an S3 source; connection "
            f"'{src.connection}' is {connection.connector}",
        )  # fmt: skip
    if from_s3 and src.include_deleted:
        problems.add(
            file, "source.include_deleted",
            "S3 keeps no deleted records to read: remove include_deleted",
        )  # fmt: skip
    if from_s3 and not BUCKET.match(split_object(src.object)[0]):
        problems.add(
            file, "source.object",
            f"'{src.object}' is not bucket/prefix: an S3 source's object names a bucket "
            "(lower case, 3-63 characters) and optionally a prefix, e.g. my-bucket/orders",
        )  # fmt: skip
    if isinstance(trigger, Event):
        if trigger.event == "new_objects" and not from_s3:
            problems.add(
                file, "trigger.event",
                f"new_objects watches an S3 prefix: the source must be an {S3_CONNECTOR} "
                f"connection, and '{src.connection}' is {connection.connector}; "
                "use event: source_changes",
            )  # fmt: skip
        if trigger.event == "source_changes" and from_s3:
            problems.add(
                file, "trigger.event",
                "an S3 source has no change probe: use event: new_objects, which lists the "
                "keys after the last one seen",
            )  # fmt: skip
    return problems


def _object_key_problems(flow: FlowSpec, file: str) -> list[Problem]:
    """An object-key cursor is no time: no start time, lookback or time partitions."""
    problems = ProblemList()
    if not by_object_key(flow):
        return problems
    incremental = flow.source.incremental
    if isinstance(incremental.start, datetime):
        problems.add(
            file, "source.incremental.start",
            f"an {OBJECT_KEY} cursor is not a time: the first run reads every object under "
            "the prefix; remove start (or write start: all)",
        )  # fmt: skip
    if incremental.lookback:
        problems.add(
            file, "source.incremental.lookback",
            f"an {OBJECT_KEY} cursor reads each object once; remove lookback",
        )  # fmt: skip
    if flow.partitions is not None:
        problems.add(
            file, "partitions",
            f"partitions are time windows; an {OBJECT_KEY} cursor is not a time: "
            "remove partitions",
        )  # fmt: skip
    return problems
