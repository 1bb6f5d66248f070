"""The new_objects trigger: a sensor per S3-source flow that lists the keys after the last one
it saw (S3's StartAfter, one page per tick) and requests one run when data objects arrived."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg

from flow_assets.connectors import resource_key
from flow_assets.connectors.s3_source import S3Object, aws_errors, is_data_object, s3_error
from flow_assets.cursor import last_key
from flow_assets.sensors import event_sensor
from flow_assets.spec.models import Event, FlowSpec
from flow_assets.spec.s3_source import split_object

log = logging.getLogger(__name__)
OBJECTS_TAG = "flowbridge/objects_through"  # the last new key a sensor-requested run was for
MAX_KEYS = 1000  # keys listed per tick at most (S3's page); the next tick goes on from there
CONNECT_TIMEOUT = 10  # seconds: an endpoint that does not answer must not hold the tick


class ListFailed(Exception):
    """The prefix could not be listed; the message is safe to show (no secrets)."""


def run_key(key: str) -> str:
    """One run per newest data key: Dagster never launches a run key twice."""
    return f"objects-through-{key}"


def new_objects_sensor(flow: FlowSpec, file: Path, job) -> dg.SensorDefinition:
    """`trigger: {event: new_objects}`: list the keys after the sensor's cursor (the last key
    it listed) at most every `min_interval_minutes`, and run the flow when data objects came."""
    trigger = flow.trigger
    assert isinstance(trigger, Event)
    src = flow.source
    conn_key = resource_key(src.connection)
    bucket, prefix = split_object(src.object)
    where = f"s3://{bucket}/{prefix}"

    @event_sensor(
        flow, job, conn_key,
        (
            f"Lists {where} through connection '{src.connection}' every "
            f"{trigger.min_interval_minutes} min at most, from the key after the last one seen "
            f"(StartAfter), and runs {flow.name} when new data objects arrived. From {file.name}."
        ),
    )  # fmt: skip
    def new_objects(context: dg.SensorEvaluationContext):
        since = _baseline(context, flow)
        try:
            listed = _list(getattr(context.resources, conn_key), bucket, prefix, since)
        except ListFailed as exc:
            return dg.SkipReason(f"could not list {where}: {exc}; the next tick lists again")
        after = f" after {since}" if since else ""
        if not listed:
            return dg.SensorResult(skip_reason=f"no new objects in {where}{after}", cursor=since)
        new = [o.key for o in listed if is_data_object(o.key, o.size, prefix)]
        cursor = listed[-1].key  # past the keys that are not data too: never listed again
        if not new:
            return dg.SensorResult(
                skip_reason=f"no new data objects in {where}{after}: {len(listed)} new keys, "
                f"none a data file (such as {listed[-1].key})",
                cursor=cursor,
            )
        request = dg.RunRequest(run_key=run_key(new[-1]), tags={OBJECTS_TAG: new[-1]})
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return new_objects


def _baseline(context: dg.SensorEvaluationContext, flow: FlowSpec) -> str | None:
    """Keys after this one are new: the later of the last key the sensor listed and the last
    object the flow committed (a run started by hand may be ahead); None: the whole prefix."""
    known = [k for k in (context.cursor, last_key(context.instance, flow)) if k]
    return max(known) if known else None


def _list(resource, bucket: str, prefix: str, since: str | None) -> list[S3Object]:
    """One page of the keys under prefix after `since`, in key order; ListFailed naming what
    S3 said (NoSuchBucket, AccessDenied...) or why it could not be reached."""
    args = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": MAX_KEYS}
    if since:
        args["StartAfter"] = since
    try:
        # One attempt: a failing S3 must not hold the sensor's tick; the next tick retries.
        s3 = resource.client("s3", max_attempts=1, connect_timeout=CONNECT_TIMEOUT)
        answer = s3.list_objects_v2(**args)
    except aws_errors() as exc:
        raise ListFailed(str(s3_error(exc, f"bucket '{bucket}'"))) from None
    except dg.DagsterError as exc:
        raise ListFailed(str(exc)) from None
    except Exception as exc:  # the sensor loop must go on; the type says enough to look further
        log.exception("listing s3://%s/%s failed", bucket, prefix)
        raise ListFailed(f"unexpected {type(exc).__name__}") from None
    return [S3Object(item["Key"], item["Size"]) for item in answer.get("Contents", [])]
