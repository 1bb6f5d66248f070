"""S3 as a source: the data objects under bucket/prefix, in key order, as typed Polars pages
(Parquet, CSV or JSON Lines), one object on the worker's disk at a time."""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from flow_assets.connectors.aws import AwsConnection
from flow_assets.connectors.base import FieldInfo, ObjectSchema, ReadRequest
from flow_assets.connectors.errors import (
    AuthError,
    ConnectorError,
    MalformedResponse,
    UnknownObject,
)
from flow_assets.connectors.http import HttpStats, TransientError
from flow_assets.spec.models import FilterSpec
from flow_assets.spec.s3_source import OBJECT_KEY, split_object

PAGE_ROWS = 50_000  # records per page unless source.page_size says otherwise
HEAD_BYTES = 1 << 20  # CSV / JSON Lines: types are inferred from the first object's first MiB
INFER_ROWS = 10_000
REFUSED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")
_COLUMN = re.compile(r"column '([^']*)'")


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int


def is_data_object(key: str, size: int, prefix: str) -> bool:
    """Not data: a folder marker, an empty object, or a name with a part under the prefix that
    starts with '_' or '.' (_SUCCESS, _manifest-<run>.json, _errors/, .crc files: hidden, as
    Hadoop and Spark hide them)."""
    rest = key[len(prefix) :]
    if not rest or rest.endswith("/") or size == 0:
        return False
    return not any(part.startswith(("_", ".")) for part in rest.split("/"))


def aws_errors() -> tuple[type[Exception], ...]:
    """What boto3 raises; imported when an error is caught, not when the module loads."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, Boto3Error)


def s3_error(exc: Exception, where: str) -> ConnectorError:
    """What S3 answered (its error code and message), naming where: never the signed request."""
    from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        if code in ("NoSuchBucket", "NoSuchKey"):
            return UnknownObject(f"{where}: {code}: {message}")
        if code in REFUSED:
            return AuthError(
                f"{where}: {code}: {message}; the connection's credentials need "
                "s3:ListBucket on the bucket and s3:GetObject on its objects"
            )
        return ConnectorError(f"{where}: {code}: {message}")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return TransientError(f"{where}: {exc}", unreachable=True)
    return ConnectorError(f"{where}: {type(exc).__name__}: {exc}")


def _csv_types(head: bytes) -> pl.Schema:
    """The types Polars infers from the first records, but a number column with a leading zero
    (a postcode, an account number: 01234) stays text, as it would lose the zero."""
    inferred = pl.read_csv(
        head, infer_schema_length=INFER_ROWS, n_rows=INFER_ROWS, try_parse_dates=True
    ).schema
    numbers = [name for name, dtype in inferred.items() if dtype.is_numeric()]
    if not numbers:
        return inferred
    text = pl.read_csv(head, infer_schema=False, n_rows=INFER_ROWS, columns=numbers)
    padded = text.select(pl.col(numbers).str.contains(r"^\s*[-+]?0\d").any())
    codes = [name for name in numbers if padded[name][0]]
    return pl.Schema({n: pl.String() if n in codes else t for n, t in inferred.items()})


@dataclass
class Calls:
    """What the extracted asset reports, under the name the HTTP connectors use (http.stats)."""

    stats: HttpStats = field(default_factory=HttpStats)


class S3SourceClient:
    """An aws connection as a source: the object is bucket/prefix; its data objects are read in
    key order (S3 lists keys in UTF-8 binary order), each downloaded to a temporary file, read
    in pages and removed. The fields are the first object's, plus _fb_object_key."""

    def __init__(
        self, connection: AwsConnection, fmt: str = "parquet", max_attempts: int | None = None
    ):
        self.connection = connection.connection_name
        self.format = fmt
        self.s3 = connection.client("s3", max_attempts)
        self.http = Calls()
        self._schemas: dict[str, ObjectSchema] = {}

    def check(self) -> None:
        self.list_objects()

    def list_objects(self) -> list[str]:
        """The buckets the connection can see: each is an object (or bucket/prefix under it)."""
        try:
            answer = self.s3.list_buckets()
        except aws_errors() as exc:
            raise s3_error(exc, f"connection '{self.connection}'") from None
        return sorted(b["Name"] for b in answer.get("Buckets", []))

    def describe(self, object_name: str) -> ObjectSchema:
        if object_name in self._schemas:
            return self._schemas[object_name]
        bucket, prefix = split_object(object_name)
        where = f"s3://{bucket}/{prefix}"
        first = next(self.objects(bucket, prefix), None)
        if first is None:
            raise UnknownObject(
                f"{where} holds no data objects yet (connection '{self.connection}'): the "
                f"fields come from the first {self.format} object there; put one there first"
            )
        columns = self._columns(bucket, first)
        fields = {n: FieldInfo(n, f"{self.format} {t}", t) for n, t in columns.items()}
        fields[OBJECT_KEY] = FieldInfo(OBJECT_KEY, "s3 key", pl.String(), nillable=False)
        self._schemas[object_name] = ObjectSchema(where, fields)
        return self._schemas[object_name]

    def can_push_down(self, spec: FilterSpec, info: FieldInfo) -> bool:
        return False  # S3 hands out whole objects; every filter runs locally

    def read(self, request: ReadRequest) -> Iterator[pl.DataFrame]:
        """Pages of at most page_size records, object by object in key order, from the key
        after request.start_after (S3's StartAfter) when it is set."""
        bucket, prefix = split_object(request.object)
        schema = self.describe(request.object)
        want = schema.polars_schema([i.name for i in schema.require(request.fields)])
        size = request.page_size or PAGE_ROWS
        with tempfile.TemporaryDirectory(prefix="flowbridge-s3-source-") as tmp:
            local = Path(tmp) / "object"
            for obj in self.objects(bucket, prefix, request.start_after):
                self._download(bucket, obj, local)
                where = f"s3://{bucket}/{obj.key}"
                frame = self._scan(local, where, want).with_columns(
                    pl.lit(obj.key, pl.String()).alias(OBJECT_KEY)
                )
                try:
                    yield from frame.select(list(want)).collect_batches(chunk_size=size)
                except pl.exceptions.PolarsError as exc:
                    raise self._unfit(exc, where, schema) from None
                local.unlink()

    def objects(
        self, bucket: str, prefix: str, start_after: str | None = None
    ) -> Iterator[S3Object]:
        """The data objects under prefix in key order, listed a page (1,000 keys) at a time."""
        args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if start_after:
            args["StartAfter"] = start_after
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(**args):
                self.http.stats.requests += 1
                for item in page.get("Contents", []):
                    if is_data_object(item["Key"], item["Size"], prefix):
                        yield S3Object(item["Key"], item["Size"])
        except aws_errors() as exc:
            raise s3_error(exc, f"s3://{bucket}/{prefix}") from None

    def _get(self, bucket: str, key: str, byte_range: str) -> bytes:
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key, Range=byte_range)["Body"].read()
        except aws_errors() as exc:
            raise s3_error(exc, f"s3://{bucket}/{key}") from None
        self.http.stats.requests += 1
        self.http.stats.bytes_received += len(body)
        return body

    def _download(self, bucket: str, obj: S3Object, local: Path) -> None:
        try:
            self.s3.download_file(bucket, obj.key, str(local))
        except aws_errors() as exc:
            raise s3_error(exc, f"s3://{bucket}/{obj.key}") from None
        self.http.stats.requests += 1
        self.http.stats.bytes_received += obj.size

    def _columns(self, bucket: str, obj: S3Object) -> pl.Schema:
        """The first object's columns: a Parquet footer (two ranged GETs), or types Polars
        infers from the first records of a CSV or JSON Lines object."""
        where = f"s3://{bucket}/{obj.key}"
        try:
            if self.format == "parquet":
                tail = self._get(bucket, obj.key, "bytes=-8")
                if tail[-4:] != b"PAR1":
                    raise MalformedResponse(f"{where} is not a Parquet file (source.format)")
                length = int.from_bytes(tail[:4], "little")
                footer = self._get(bucket, obj.key, f"bytes=-{length + 8}")
                return pl.read_parquet_schema(io.BytesIO(b"PAR1" + footer))
            head = self._get(bucket, obj.key, f"bytes=0-{HEAD_BYTES - 1}")
            if obj.size > len(head):
                head = head[: head.rfind(b"\n") + 1]  # whole records only
            if self.format == "csv":
                return _csv_types(head)
            return pl.read_ndjson(head, infer_schema_length=INFER_ROWS, n_rows=INFER_ROWS).schema
        except pl.exceptions.PolarsError as exc:
            raise self._unreadable(where, exc) from None

    def _scan(self, local: Path, where: str, want: pl.Schema) -> pl.LazyFrame:
        """One downloaded object's wanted columns with the described types."""
        columns = {n: t for n, t in want.items() if n != OBJECT_KEY}
        try:
            if self.format == "parquet":
                frame = pl.scan_parquet(local)
            elif self.format == "csv":  # columns not read stay text: nothing to infer
                frame = pl.scan_csv(local, infer_schema=False, schema_overrides=columns)
            else:  # a key a record lacks is null, as JSON has it
                frame = pl.scan_ndjson(local, schema=columns)
            have = frame.collect_schema()
        except pl.exceptions.PolarsError as exc:
            raise self._unreadable(where, exc) from None
        missing = [n for n in columns if n not in have]
        if missing:
            raise MalformedResponse(
                f"{where} has no field '{missing[0]}', which the first object has: the objects "
                "under a prefix share their fields"
            )
        return frame.select(pl.col(n).cast(t) for n, t in columns.items())

    def _unreadable(self, where: str, exc: Exception) -> MalformedResponse:
        return MalformedResponse(
            f"{where} is not readable as {self.format} (source.format): {type(exc).__name__}"
        )

    def _unfit(self, exc: Exception, where: str, schema: ObjectSchema) -> MalformedResponse:
        """A value that does not fit its described type, naming the field but never the value
        (Polars' message carries it)."""
        found = _COLUMN.search(str(exc))
        field_name = f" field '{found[1]}':" if found else ""
        return MalformedResponse(
            f"{where}:{field_name} a value does not fit the type described from the first "
            f"object under {schema.name} ({type(exc).__name__})"
        )
