"""The new_objects trigger against a real moto server: one run per tick when data objects
arrive, run key and cursor from the keys, StartAfter so no tick lists the prefix again, skip
reasons that name the bucket and never a credential, and the requested runs' records."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import polars as pl
import pytest

from flow_assets import s3_sensor
from flow_assets.connectors import resource_key
from flow_assets.connectors.aws import AwsConnection
from flow_assets.definitions import build_definitions
from flow_assets.runner import QUIET
from flow_assets.s3_sensor import OBJECTS_TAG
from tests.conftest import copy_project, failure_message, materialization
from tests.connectors.test_s3_source import BUCKET, lake_table, orders, put_parquet

FLOW = "s3_orders_to_lake"
SENSOR = f"{FLOW}_new_objects"
WHERE = f"s3://{BUCKET}/orders/"
CONNECTION = resource_key("aws_default")


@pytest.fixture
def project(tmp_path, aws):
    return copy_project(tmp_path)


@pytest.fixture
def s3(aws):
    client = aws("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def evaluate(settings, instance, cursor: str | None = None):
    """One tick of the flow's sensor, as the daemon evaluates it, with the resource it needs."""
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(SENSOR)
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={CONNECTION: defs.resources[CONNECTION]},
        definitions=defs,
    ) as context:  # fmt: skip
        return sensor.evaluate_tick(context)


def run(settings, instance, request: dg.RunRequest | None = None):
    job = build_definitions(settings).resolve_job_def(f"{FLOW}_job")
    tags = {**request.tags, "dagster/sensor_name": SENSOR} if request else {}
    return job.execute_in_process(instance=instance, raise_on_error=False, tags=tags,
                                  run_config=QUIET)  # fmt: skip


@pytest.fixture
def listings(monkeypatch):
    """Every ListObjectsV2 call the aws connection makes: (its parameters, the keys answered)."""
    calls: list[tuple[dict, list[str]]] = []
    client = AwsConnection.client

    def recording(self, service, *args, **kwargs):
        made = client(self, service, *args, **kwargs)
        made.meta.events.register(
            "provide-client-params.s3.ListObjectsV2",
            lambda params, **_: calls.append((dict(params), [])),
        )
        made.meta.events.register(
            "after-call.s3.ListObjectsV2",
            lambda parsed, **_: calls[-1][1].extend(o["Key"] for o in parsed.get("Contents", [])),
        )
        return made

    monkeypatch.setattr(AwsConnection, "client", recording)
    return calls


def test_new_objects_start_one_run_and_the_cursor_moves_past_them(project, instance, s3):
    empty = evaluate(project, instance)
    assert empty.run_requests == [] and empty.cursor is None
    assert empty.skip_message == f"no new objects in {WHERE}"

    put_parquet(s3, "orders/2024-01-01.parquet", orders(0, 3))
    put_parquet(s3, "orders/2024-01-02.parquet", orders(3, 3))
    s3.put_object(Bucket=BUCKET, Key="orders/_SUCCESS", Body=b"")  # sorts after the digits
    tick = evaluate(project, instance)
    [request] = tick.run_requests
    assert request.run_key == "objects-through-orders/2024-01-02.parquet"
    assert request.tags[OBJECTS_TAG] == "orders/2024-01-02.parquet"
    assert tick.cursor == "orders/_SUCCESS"  # the last key listed: never listed again
    # Rewound, the sensor asks for the same run key: Dagster runs it once.
    assert evaluate(project, instance).run_requests[0].run_key == request.run_key

    quiet = evaluate(project, instance, tick.cursor)
    assert quiet.run_requests == [] and quiet.cursor == tick.cursor
    assert quiet.skip_message == f"no new objects in {WHERE} after orders/_SUCCESS"

    s3.put_object(Bucket=BUCKET, Key="orders/_manifest-0001.json", Body=b"{}")
    only_markers = evaluate(project, instance, tick.cursor)
    assert only_markers.run_requests == []
    assert only_markers.cursor == "orders/_manifest-0001.json"
    assert only_markers.skip_message == (
        f"no new data objects in {WHERE} after orders/_SUCCESS: 1 new keys, none a data file "
        "(such as orders/_manifest-0001.json)"
    )


def test_each_tick_lists_only_the_keys_after_the_cursor(project, instance, s3, listings):
    for day in range(30):
        put_parquet(s3, f"orders/day-{day:02d}.parquet", orders(day, 1))
    cursor = "orders/day-29.parquet"
    # A late object whose key sorts before the cursor. S3 lists keys in UTF-8 binary order and
    # StartAfter starts the listing after the given key (ListObjectsV2), so it is never listed:
    # producers name objects so that later ones sort later (a time or a sequence number).
    put_parquet(s3, "orders/day-05-late.parquet", orders(99, 1))
    quiet = evaluate(project, instance, cursor)
    assert quiet.run_requests == []
    [(params, keys)] = listings
    assert params["StartAfter"] == cursor and params["MaxKeys"] == s3_sensor.MAX_KEYS
    assert keys == []  # 31 objects under the prefix, none of them listed

    put_parquet(s3, "orders/day-30.parquet", orders(30, 1))
    tick = evaluate(project, instance, cursor)
    assert listings[-1][1] == ["orders/day-30.parquet"]
    assert tick.run_requests[0].run_key == "objects-through-orders/day-30.parquet"


def test_a_tick_lists_one_page_and_the_next_goes_on(project, instance, s3, monkeypatch, listings):
    monkeypatch.setattr(s3_sensor, "MAX_KEYS", 3)
    for n in range(5):
        put_parquet(s3, f"orders/{n}.parquet", orders(n, 1))
    first = evaluate(project, instance)
    assert first.run_requests[0].run_key == "objects-through-orders/2.parquet"
    assert first.cursor == "orders/2.parquet"
    second = evaluate(project, instance, first.cursor)
    assert second.run_requests[0].run_key == "objects-through-orders/4.parquet"
    assert [(p.get("StartAfter"), p["MaxKeys"], k) for p, k in listings] == [
        (None, 3, ["orders/0.parquet", "orders/1.parquet", "orders/2.parquet"]),
        ("orders/2.parquet", 3, ["orders/3.parquet", "orders/4.parquet"]),
    ]


def test_requested_runs_deliver_the_new_objects_exactly(project, instance, s3):
    first, second = orders(0, 40), orders(40, 25)
    put_parquet(s3, "orders/2024-01-01T10.parquet", first)
    put_parquet(s3, "orders/2024-01-01T11.parquet", second)
    tick = evaluate(project, instance)
    [request] = tick.run_requests
    result = run(project, instance, request)
    assert result.success, failure_message(result)
    assert materialization(result, FLOW, "records")["records_read"] == 65
    table = lake_table(project)
    assert table.drop("_fb_object_key").equals(pl.concat([first, second]))
    again = evaluate(project, instance, tick.cursor)
    assert again.run_requests == []

    third = orders(65, 7)
    put_parquet(s3, "orders/2024-01-01T12.parquet", third)
    [request] = evaluate(project, instance, again.cursor).run_requests
    assert request.run_key == "objects-through-orders/2024-01-01T12.parquet"
    result = run(project, instance, request)
    assert result.success, failure_message(result)
    assert materialization(result, FLOW, "records")["records_read"] == 7  # the new object only
    assert lake_table(project)["order_id"].to_list() == list(range(72))
    last = evaluate(project, instance, "orders/2024-01-01T12.parquet")
    assert last.run_requests == [] and last.skip_message.startswith("no new objects")


def test_a_run_started_by_hand_moves_the_baseline(project, instance, s3):
    put_parquet(s3, "orders/a.parquet", orders(0, 2))
    assert run(project, instance).success  # not from the sensor: it has no cursor yet
    tick = evaluate(project, instance)
    assert tick.run_requests == []
    assert tick.skip_message == f"no new objects in {WHERE} after orders/a.parquet"


class Refusing(BaseHTTPRequestHandler):
    """Answers every call as S3 does when a policy denies it."""

    def do_GET(self) -> None:  # noqa: N802
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            b"<Message>Access Denied</Message><RequestId>flowbridge-tests</RequestId></Error>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_listing_failures_skip_naming_the_bucket_not_a_credential(
    project, instance, aws, monkeypatch, refusing_endpoint
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFLOWBRIDGE4711")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-4711")
    cursor = "orders/b.parquet"
    missing = evaluate(project, instance, cursor)  # the fixture made no bucket
    denied_env, unreachable_env = refusing_endpoint, "http://127.0.0.1:9"  # discard: refused
    monkeypatch.setenv("AWS_ENDPOINT_URL", denied_env)
    denied = evaluate(project, instance, cursor)
    monkeypatch.setenv("AWS_ENDPOINT_URL", unreachable_env)
    started = time.monotonic()
    unreachable = evaluate(project, instance, cursor)
    assert time.monotonic() - started < 20  # one attempt, no retries holding the tick
    for tick, says in [
        (missing, f"bucket '{BUCKET}': NoSuchBucket: The specified bucket does not exist"),
        (denied, f"bucket '{BUCKET}': AccessDenied: Access Denied; the connection's credentials "
                 "need s3:ListBucket"),
        (unreachable, "Could not connect to the endpoint URL"),
    ]:  # fmt: skip
        assert tick.run_requests == [] and tick.cursor == cursor
        assert tick.skip_message.startswith(f"could not list {WHERE}: ")
        assert says in tick.skip_message
        assert tick.skip_message.endswith("; the next tick lists again")
        assert "4711" not in tick.skip_message


def test_sensor_settings_come_from_the_flow_file(project):
    sensor = build_definitions(project).resolve_sensor_def(SENSOR)
    assert (sensor.job_name, sensor.minimum_interval_seconds) == (f"{FLOW}_job", 60)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert "(StartAfter)" in sensor.description
    path = project.flows_dir / f"{FLOW}.yaml"
    path.write_text(path.read_text().replace("min_interval_minutes: 1, status: off", "status: on"))
    sensor = build_definitions(project).resolve_sensor_def(SENSOR)
    assert sensor.minimum_interval_seconds == 300
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
