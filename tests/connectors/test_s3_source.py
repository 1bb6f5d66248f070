"""The S3 source against a real moto server: objects put with boto3 land in the lake exactly,
types kept; later runs read only the objects after the last key read; files that are not data
are never read; CSV and JSON Lines; errors name the object and field, never a value."""

import io
import json
import tempfile
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.connectors.aws import AwsConnection
from flow_assets.connectors.base import ReadRequest
from flow_assets.connectors.errors import MalformedResponse, UnknownObject
from flow_assets.connectors.s3_source import S3SourceClient
from flow_assets.destinations.lake import Lake
from flow_assets.destinations.s3 import published_files
from flow_assets.spec import FlowFileError, load_flow_file
from flow_assets.spec.appflow import import_appflow, to_yaml
from flow_assets.spec.loading import load_connections
from tests.conftest import REPO, copy_project, failure_message, materialization, run_flow

FLOW = "s3_orders_to_lake"
BUCKET = "flowbridge-example-inbound"  # the example flow's
KEY = "_fb_object_key"
# Under the prefix but not data (Hadoop/Spark's hidden names, manifests, folder markers, empty
# objects), or beside it: a run that read any of them would fail or count their rows.
NOT_DATA = [
    "orders/",
    "orders/_SUCCESS",
    "orders/2024/01/02/_SUCCESS",
    "orders/_manifest-0001.json",
    "orders/.part-0.parquet.crc",
    "orders/_temporary/0/part-9.parquet",
    "orders/2024/01/01/empty.parquet",
]


@pytest.fixture
def inbound(tmp_path, aws):
    """A copy of the project and the example flow's bucket on moto: (project, s3 client)."""
    s3 = aws("s3")
    s3.create_bucket(Bucket=BUCKET)
    return copy_project(tmp_path), s3


def orders(first: int, count: int) -> pl.DataFrame:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "order_id": pl.Series(range(first, first + count), dtype=pl.Int64),
            "customer_id": [f"C{i % 7:03d}" for i in range(first, first + count)],
            "amount": [None if i % 11 == 0 else i * 1.25 for i in range(first, first + count)],
            "currency": ["EUR" if i % 2 else "USD" for i in range(first, first + count)],
            "ordered_at": [start + timedelta(minutes=i) for i in range(first, first + count)],
        },
        schema_overrides={"ordered_at": pl.Datetime("us", "UTC")},
    )


def put_parquet(s3, key: str, frame: pl.DataFrame, bucket: str = BUCKET) -> None:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def put_not_data(s3) -> None:
    for key in NOT_DATA:
        body = b"" if key.endswith(("/", "empty.parquet")) else b"not a data file"
        if key.endswith(".parquet") and body:
            buffer = io.BytesIO()
            orders(900, 3).write_parquet(buffer)
            body = buffer.getvalue()  # readable, and still not to be read
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    put_parquet(s3, "orders-archive/part-0.parquet", orders(800, 4))  # beside the prefix


def lake_table(project, flow: str = FLOW) -> pl.DataFrame:
    return Lake(project.lake_dir).scan(flow).collect().sort("order_id")


def landed(*parts: tuple[str, pl.DataFrame]) -> pl.DataFrame:
    """What the lake should hold: each object's records with the key they came from."""
    return pl.concat(frame.with_columns(pl.lit(key).alias(KEY)) for key, frame in parts)


def test_parquet_objects_land_exactly_with_their_types(inbound, instance):
    project, s3 = inbound
    first, second = orders(0, 3), orders(3, 1000)
    put_parquet(s3, "orders/2024/01/01/part-0.parquet", first)
    put_parquet(s3, "orders/2024/01/02/part-0.parquet", second)
    put_not_data(s3)
    result = run_flow(project, instance, FLOW)
    assert result.success, failure_message(result)
    records = materialization(result, FLOW, "records")
    assert records["records_read"] == 1003
    assert records["cursor"] == "orders/2024/01/02/part-0.parquet"
    expected = landed(
        ("orders/2024/01/01/part-0.parquet", first), ("orders/2024/01/02/part-0.parquet", second)
    )
    assert_frame_equal(lake_table(project), expected)  # values and dtypes (UTC kept)


def test_every_field_of_the_objects_keeps_its_parquet_type(inbound, instance):
    project, s3 = inbound
    frame = pl.DataFrame(
        {
            "id": pl.Series([1, 2, 3], dtype=pl.Int32),
            "price": pl.Series(["1.10", "20.00", None]).str.to_decimal(scale=2),
            "paid": [True, False, None],
            "day": [datetime(2024, 5, d).date() for d in (1, 2, 3)],
            "at": pl.Series([datetime(2024, 5, 1, 12)] * 3).dt.replace_time_zone("Europe/Berlin"),
            "ratio": pl.Series([0.5, None, 1.5], dtype=pl.Float32),
        }
    )
    put_parquet(s3, "things/a.parquet", frame)
    (project.flows_dir / "s3_things.yaml").write_text(
        f"source: {{connection: aws_default, object: {BUCKET}/things}}\n"
    )  # every field the first object has, plus the key
    result = run_flow(project, instance, "s3_things")
    assert result.success, failure_message(result)
    table = Lake(project.lake_dir).scan("s3_things").collect().sort("id")
    assert_frame_equal(table, frame.with_columns(pl.lit("things/a.parquet").alias(KEY)))


def test_the_next_run_reads_only_objects_after_the_last_key_read(inbound, instance):
    project, s3 = inbound
    first, second = orders(0, 10), orders(10, 20)
    put_parquet(s3, "orders/2024/01/01/part-0.parquet", first)
    put_parquet(s3, "orders/2024/01/02/part-0.parquet", second)
    assert run_flow(project, instance, FLOW).success

    third = orders(30, 5)
    put_parquet(s3, "orders/2024/01/03/part-0.parquet", third)
    # A late object whose key sorts before the last one read: StartAfter never lists it.
    put_parquet(s3, "orders/2024/01/01/part-1.parquet", orders(500, 7))
    result = run_flow(project, instance, FLOW)
    assert result.success, failure_message(result)
    extracted = materialization(result, FLOW, "extracted")
    assert extracted["cursor_window"] == "objects after orders/2024/01/02/part-0.parquet"
    records = materialization(result, FLOW, "records")
    assert records["records_read"] == 5
    assert records["cursor"] == "orders/2024/01/03/part-0.parquet"
    expected = landed(
        ("orders/2024/01/01/part-0.parquet", first),
        ("orders/2024/01/02/part-0.parquet", second),
        ("orders/2024/01/03/part-0.parquet", third),
    )
    assert_frame_equal(lake_table(project), expected)

    again = run_flow(project, instance, FLOW)  # nothing new: nothing read, the cursor stays
    assert materialization(again, FLOW, "records")["records_read"] == 0
    assert materialization(again, FLOW, "records")["cursor"] == "orders/2024/01/03/part-0.parquet"


CSV_FLOW = """\
source:
  connection: aws_default
  object: flowbridge-example-inbound/orders
  format: {format}
  fields: [order_id, customer_id, amount, currency, ordered_at, _fb_object_key]
  incremental: {{cursor_field: _fb_object_key}}
"""


def as_text(frame: pl.DataFrame, fmt: str, reorder: bool = False) -> bytes:
    if reorder:  # objects may order their columns differently: they are read by name
        frame = frame.select(reversed(frame.columns))
    if fmt == "csv":
        return frame.write_csv().encode()
    return frame.write_ndjson().encode()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_csv_and_json_lines_objects(inbound, instance, fmt):
    project, s3 = inbound
    (project.flows_dir / f"s3_orders_{fmt}.yaml").write_text(CSV_FLOW.format(format=fmt))
    first, second = orders(0, 4), orders(4, 3)
    s3.put_object(Bucket=BUCKET, Key=f"orders/a.{fmt}", Body=as_text(first, fmt))
    s3.put_object(Bucket=BUCKET, Key=f"orders/b.{fmt}", Body=as_text(second, fmt, reorder=True))
    s3.put_object(Bucket=BUCKET, Key="orders/_SUCCESS", Body=b"")
    result = run_flow(project, instance, f"s3_orders_{fmt}")
    assert result.success, failure_message(result)
    assert materialization(result, f"s3_orders_{fmt}", "records")["cursor"] == f"orders/b.{fmt}"
    table = lake_table(project, f"s3_orders_{fmt}")
    expected = landed((f"orders/a.{fmt}", first), (f"orders/b.{fmt}", second))
    if fmt == "jsonl":  # JSON has no time type: the text stays text (a cast task makes a time)
        assert table.schema["ordered_at"] == pl.String
        table = table.with_columns(pl.col("ordered_at").str.to_datetime(time_zone="UTC"))
    assert_frame_equal(table, expected)  # CSV: types inferred by Polars, ISO times with UTC


def client(moto_endpoint: str, fmt: str = "parquet") -> S3SourceClient:
    return S3SourceClient(AwsConnection(endpoint_url=moto_endpoint), fmt)


FIELDS = ["order_id", "amount", KEY]


def test_csv_numbers_with_a_leading_zero_stay_text(aws, moto_endpoint):
    s3 = aws("s3")
    s3.create_bucket(Bucket=BUCKET)
    body = b"postcode,account,count,share\n10115,0042,3,0.5\n01067,1234,4,1.5\n"
    s3.put_object(Bucket=BUCKET, Key="places/a.csv", Body=body)
    source = client(moto_endpoint, "csv")
    schema = source.describe(f"{BUCKET}/places")
    types = {name: info.dtype for name, info in schema.fields.items()}
    assert types == {"postcode": pl.String, "account": pl.String, "count": pl.Int64,
                     "share": pl.Float64, KEY: pl.String}  # fmt: skip
    [page] = source.read(ReadRequest(f"{BUCKET}/places", ["postcode", "account", "count"]))
    assert page.rows() == [("10115", "0042", 3), ("01067", "1234", 4)]


def test_pages_stream_one_object_at_a_time(aws, moto_endpoint, monkeypatch, tmp_path):
    s3 = aws("s3")
    s3.create_bucket(Bucket=BUCKET)
    for n in range(4):
        put_parquet(s3, f"orders/{n}.parquet", orders(n * 100, 100))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    source = client(moto_endpoint)
    before_download: list[int] = []
    download = source._download

    def watching(*args) -> None:
        before_download.append(sum(p.is_file() for p in tmp_path.rglob("*")))
        download(*args)

    monkeypatch.setattr(source, "_download", watching)
    request = ReadRequest(f"{BUCKET}/orders", FIELDS, page_size=40)
    pages = source.read(request)
    first = next(pages)
    assert first.height == 40 and first.columns == FIELDS
    on_disk = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(on_disk) == 1  # the first object only: the others are not fetched yet
    size = s3.head_object(Bucket=BUCKET, Key="orders/0.parquet")["ContentLength"]
    footer = source.http.stats.bytes_received - size  # describe read the footer only
    assert 0 < footer < size
    rest = list(pages)
    assert [p.height for p in [first, *rest]] == [40, 40, 20] * 4
    assert pl.concat([first, *rest])["order_id"].to_list() == list(range(400))
    assert before_download == [0, 0, 0, 0]  # each object is removed before the next comes
    assert not any(tmp_path.rglob("*"))


def test_a_key_a_json_record_lacks_is_null(aws, moto_endpoint):
    s3 = aws("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="j/1.jsonl", Body=b'{"order_id": 1, "amount": 2.5}\n')
    s3.put_object(Bucket=BUCKET, Key="j/2.jsonl", Body=b'{"order_id": 2, "note": "late"}\n')
    pages = client(moto_endpoint, "jsonl").read(ReadRequest(f"{BUCKET}/j", FIELDS))
    assert pl.concat(pages).rows() == [(1, 2.5, "j/1.jsonl"), (2, None, "j/2.jsonl")]


def test_errors_name_the_object_and_field_never_a_value(aws, moto_endpoint):
    s3 = aws("s3")
    s3.create_bucket(Bucket=BUCKET)
    with pytest.raises(UnknownObject, match="holds no data objects yet"):
        client(moto_endpoint).describe(f"{BUCKET}/orders")
    with pytest.raises(UnknownObject, match="NoSuchBucket"):
        client(moto_endpoint).describe("no-such-bucket/orders")

    put_parquet(s3, "orders/1.parquet", orders(0, 3))
    put_parquet(s3, "orders/2.parquet", orders(3, 3).drop("amount"))
    with pytest.raises(MalformedResponse) as info:
        list(client(moto_endpoint).read(ReadRequest(f"{BUCKET}/orders", FIELDS)))
    assert str(info.value) == (
        f"s3://{BUCKET}/orders/2.parquet has no field 'amount', which the first object has: "
        "the objects under a prefix share their fields"
    )

    s3.put_object(Bucket=BUCKET, Key="csv/1.csv", Body=b"order_id,amount\n1,2.5\n")
    s3.put_object(Bucket=BUCKET, Key="csv/2.csv", Body=b"order_id,amount\njane@example.com,1\n")
    with pytest.raises(MalformedResponse) as info:
        list(client(moto_endpoint, "csv").read(ReadRequest(f"{BUCKET}/csv", FIELDS[:2])))
    assert f"s3://{BUCKET}/csv/2.csv: field 'order_id': a value does not fit" in str(info.value)
    assert "jane" not in str(info.value)

    s3.put_object(Bucket=BUCKET, Key="text/1.parquet", Body=b"order_id,amount\n1,2.5\n")
    with pytest.raises(MalformedResponse, match="is not a Parquet file"):
        client(moto_endpoint).describe(f"{BUCKET}/text")


@pytest.mark.parametrize(
    ("edit", "path", "says"),
    [
        ({"format": "csv", "connection": "salesforce_sandbox", "object": "Opportunity"},
         "source.format", "only an S3 source"),
        ({"incremental": {"cursor_field": "ordered_at"}}, "source.incremental.cursor_field",
         "write cursor_field: _fb_object_key"),
        ({"incremental": {"cursor_field": KEY, "start": "2024-01-01T00:00:00Z"}},
         "source.incremental.start", "is not a time"),
        ({"object": "Not_A_Bucket/orders"}, "source.object", "is not bucket/prefix"),
        ({"include_deleted": True}, "source.include_deleted", "no deleted records"),
    ],
)  # fmt: skip
def test_flow_file_mistakes_name_the_field(tmp_path, edit, path, says):
    raw = {
        "source": {"connection": "aws_default", "object": f"{BUCKET}/orders", **edit},
        "trigger": "on_demand",
    }
    if "ordered_at" in json.dumps(edit):
        raw["source"]["fields"] = ["order_id", "ordered_at"]
    file = tmp_path / "mistake.yaml"
    file.write_text(json.dumps(raw))
    connections = load_connections(REPO / "flow_defs" / "connections.yaml")
    with pytest.raises(FlowFileError) as info:
        load_flow_file(file, connections)
    problem = next(p for p in info.value.problems if p.path == path)
    assert says in problem.message


def test_triggers_fit_their_source(tmp_path):
    connections = load_connections(REPO / "flow_defs" / "connections.yaml")
    cases = [
        ("aws_default", f"{BUCKET}/orders", "source_changes", "use event: new_objects"),
        ("salesforce_sandbox", "Opportunity", "new_objects", "use event: source_changes"),
    ]
    for connection, obj, event, says in cases:
        file = tmp_path / "trigger.yaml"
        raw = {"source": {"connection": connection, "object": obj}, "trigger": {"event": event}}
        file.write_text(json.dumps(raw))
        with pytest.raises(FlowFileError) as info:
            load_flow_file(file, connections)
        assert [p.path for p in info.value.problems] == ["trigger.event"]
        assert says in info.value.problems[0].message


APPFLOW_S3_TO_S3 = REPO / "tests" / "spec" / "appflow" / "s3_to_salesforce_upsert.json"


def test_an_imported_appflow_s3_source_loads_and_runs(inbound, instance, aws):
    """AppFlow's S3 source (bucketName, bucketPrefix, CSV) imported as connector: s3 on the
    aws_default connection; with an S3 destination instead of Salesforce it runs as it is."""
    project, s3 = inbound
    raw = json.loads(APPFLOW_S3_TO_S3.read_text())
    raw["destinationFlowConfigList"] = [
        {
            "connectorType": "S3",
            "destinationConnectorProperties": {
                "S3": {"bucketName": "flowbridge-lake", "bucketPrefix": "contacts",
                       "s3OutputFormatConfig": {"fileType": "PARQUET"}},
            },
        }
    ]  # fmt: skip
    conversion = import_appflow(raw, "s3_to_s3.json")
    assert conversion.result["source"] == {
        "connector": "s3",
        "connection": "aws_default",
        "object": "flowbridge-inbound/contacts",
        "format": "csv",
        "fields": ["email", "first_name", "last_name", "phone"],
    }
    path = project.flows_dir / "contacts_to_s3.yaml"
    path.write_text(to_yaml(conversion, "s3_to_s3.json"))
    load_flow_file(path, load_connections(project.flows_dir / "connections.yaml"))

    s3.create_bucket(Bucket="flowbridge-inbound")
    s3.create_bucket(Bucket="flowbridge-lake")
    contacts = "email,first_name,last_name,phone\na@x.org,Ann,Lee,555\n,No,Email,556\n"
    s3.put_object(Bucket="flowbridge-inbound", Key="contacts/day1.csv", Body=contacts.encode())
    name = conversion.result["name"]
    result = run_flow(project, instance, name)
    assert result.success, failure_message(result)
    [key] = published_files(s3, "flowbridge-lake", "contacts/")
    body = s3.get_object(Bucket="flowbridge-lake", Key=key)["Body"].read()
    written = pl.read_parquet(io.BytesIO(body))
    assert written.to_dicts() == [  # the record without an email was dropped by its validate
        {"Email": "a@x.org", "FirstName": "Ann", "LastName": "Lee", "Phone": 555}
    ]


def test_validate_checks_an_s3_source_when_it_can(tmp_path, aws, monkeypatch):
    from flow_assets.validate import validate_project

    flows = tmp_path / "flow_defs"
    flows.mkdir()
    for name in ("connections.yaml", f"{FLOW}.yaml"):
        (flows / name).write_text((REPO / "flow_defs" / name).read_text())
    s3 = aws("s3")
    s3.create_bucket(Bucket=BUCKET)
    [problem] = validate_project(flows).problems
    assert (problem.path, problem.message) == (
        "source.object",
        f"s3://{BUCKET}/orders/ holds no data objects yet (connection 'aws_default'): the fields "
        "come from the first parquet object there; put one there first",
    )
    put_parquet(s3, "orders/1.parquet", orders(0, 2).drop("currency"))
    [problem] = validate_project(flows).problems
    assert (problem.path, problem.message) == (
        "source.fields",
        f"'currency' is not a field of s3://{BUCKET}/orders/",
    )
    put_parquet(s3, "orders/0.parquet", orders(0, 2))  # now the first object
    assert validate_project(flows).flows_ok == [FLOW]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    report = validate_project(flows)
    assert report.problems == []
    assert report.notes == [
        f"{flows / FLOW}.yaml: not checked against the source: no AWS credentials here "
        "(environment, ~/.aws or an instance role)"
    ]
