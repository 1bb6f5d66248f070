"""The S3 destination: a run's records as Parquet, CSV or JSON Lines under AppFlow-style
prefixes, encrypted with SSE-S3 or SSE-KMS, made visible together by a manifest written last.

Readers list the manifests (`_manifest-<run>.json`) and read the files named by those no other
manifest replaces (`live_manifests`); a file that no manifest names belongs to a run that did
not finish and is ignored. `format: delta` is written by flow_assets.destinations.delta.
"""

import json
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from flow_assets.connectors.aws import AwsConnection
from flow_assets.destinations.delta import write_delta
from flow_assets.destinations.glue import register
from flow_assets.destinations.staging import Staged, last_per_key, parquet_rows, table_schema
from flow_assets.destinations.staging_crypto import is_encrypted
from flow_assets.spec.models import S3Settings

MANIFEST = "_manifest-"
EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}


@dataclass(frozen=True)
class S3WriteResult:
    prefix: str
    manifest: str
    files: list[dict[str, Any]]
    rows: int
    bytes: int


def partition_prefix(settings: S3Settings, flow: str, run_id: str, at: datetime) -> str:
    """prefix/year=2024/month=01/day=15/run_id=.../ as the flow's partitioning asks."""
    parts = [settings.prefix.strip("/") or flow]
    values = {
        "year": f"{at:%Y}",
        "month": f"{at:%m}",
        "day": f"{at:%d}",
        "hour": f"{at:%H}",
        "run_id": run_id,
    }
    parts += [f"{name}={values[name]}" for name in settings.partitioning]
    return "/".join(parts) + "/"


def encryption_args(settings: S3Settings) -> dict[str, str]:
    enc = settings.encryption
    if enc is None:
        return {}
    if enc.type == "sse-s3":
        return {"ServerSideEncryption": "AES256"}
    args = {"ServerSideEncryption": "aws:kms"}
    if enc.kms_key_id:
        args["SSEKMSKeyId"] = enc.kms_key_id
    return args


class S3Writer:
    """Uploads one run's staged records to S3 and publishes them with a manifest.

    Overwrite and upsert publish a manifest that `replaces` the ones before it in the same
    prefix, so readers switch from the old files to the new ones in one step; the replaced
    manifests and their files are removed afterwards.
    """

    def __init__(self, client: Any, settings: S3Settings, flow: str, run_id: str, at: datetime):
        self.client = client
        self.settings = settings
        self.run_id = run_id
        self.prefix = partition_prefix(settings, flow, run_id, at)
        self.extra = encryption_args(settings)

    def write(
        self, staged: Staged, mode: str, key: Sequence[str] = (), as_is: bool = False
    ) -> S3WriteResult:
        """as_is: upload each staged file unchanged (a staging copy, whose encrypted files
        cannot be re-encoded without their key)."""
        replaces = self._manifests_here() if mode in ("overwrite", "upsert") else []
        uploaded: list[dict[str, Any]] = []
        try:
            with tempfile.TemporaryDirectory(prefix="flowbridge-s3-") as tmp:
                if mode == "upsert":
                    staged = self._merged(staged, replaces, key, Path(tmp))
                everything = sorted(staged.path.glob("*.parquet"))  # with encrypted side files
                groups = [[f] for f in everything] if as_is else self._groups(staged)
                for n, group in enumerate(groups):
                    uploaded.append(self._upload(group, Path(tmp), n, as_is))
                manifest = self._publish(uploaded, staged, replaces)
        except BaseException:
            for item in uploaded:  # invisible without a manifest; removed to leave no litter
                self.client.delete_object(Bucket=self.settings.bucket, Key=item["key"])
            raise
        self._remove(replaces)
        return S3WriteResult(
            self.prefix,
            manifest,
            uploaded,
            sum(f["rows"] for f in uploaded),
            sum(f["bytes"] for f in uploaded),
        )

    def _manifests_here(self) -> list[str]:
        """Every manifest directly in the run's prefix, replaced or not: a new manifest replaces
        them all, so one left behind by an interrupted clean-up never comes back to life."""
        return [
            k
            for k in list_keys(self.client, self.settings.bucket, self.prefix)
            if k[len(self.prefix) :].startswith(MANIFEST)
        ]

    def _merged(self, staged: Staged, replaces: list[str], key: Sequence[str], tmp: Path) -> Staged:
        """What an upsert publishes: the published records whose key the run does not carry,
        then the run's last record per key. One old file at a time is in memory."""
        new = last_per_key(staged, key, tmp / "new")
        old = []
        live = live_manifests(self.client, self.settings.bucket, self.prefix)
        for n, name in enumerate(f["key"] for m in replaces if m in live for f in live[m]["files"]):
            old.append(tmp / f"old-{n:05d}.parquet")
            self.client.download_file(self.settings.bucket, name, str(old[-1]))
        schema = merged_schema([pl.read_parquet_schema(f) for f in old], new.files[0])
        keys = pl.scan_parquet(new.files).select(key).collect().lazy()
        merged = tmp / "merged"
        merged.mkdir()
        for n, path in enumerate([*old, *new.files]):
            frame = pl.scan_parquet(path)
            if path in old:
                frame = frame.join(keys, on=list(key), how="anti")
            frame.select(conform(frame.collect_schema(), schema)).sink_parquet(
                merged / f"part-{n:05d}.parquet"
            )
        files = sorted(merged.glob("*.parquet"))
        return Staged(merged, parquet_rows(files), sum(f.stat().st_size for f in files))

    def _groups(self, staged: Staged) -> list[list[Path]]:
        """Staged files grouped into output files: one per run, or about file_size_mb each."""
        files = staged.files
        if self.settings.file_size_mb is None:
            return [files]
        target = self.settings.file_size_mb * 1024 * 1024
        groups: list[list[Path]] = [[]]
        size = 0
        for path in files:
            if groups[-1] and size >= target:
                groups.append([])
                size = 0
            groups[-1].append(path)
            size += path.stat().st_size
        return groups

    def _upload(self, group: list[Path], tmp: Path, n: int, as_is: bool = False) -> dict[str, Any]:
        fmt = self.settings.format
        local = tmp / f"part-{n:05d}.{EXTENSIONS[fmt]}"
        frame = pl.scan_parquet(group)
        if as_is:  # under its own name: a data file and its side file stay paired
            (local,) = group
            self.client.upload_file(
                str(local), self.settings.bucket, self.prefix + local.name, ExtraArgs=self.extra
            )
            rows = 0 if is_encrypted(local) else parquet_rows(group)
            return {"key": self.prefix + local.name, "rows": rows, "bytes": local.stat().st_size}
        if fmt == "parquet":
            frame.sink_parquet(local, compression="zstd")
        elif fmt == "csv":
            frame.sink_csv(local)
        else:
            frame.sink_ndjson(local)
        rows = parquet_rows(group)
        key = (
            f"{self.prefix}part-{self.run_id[:8]}-{uuid.uuid4().hex[:8]}-{n:05d}.{EXTENSIONS[fmt]}"
        )
        self.client.upload_file(str(local), self.settings.bucket, key, ExtraArgs=self.extra)
        return {"key": key, "rows": rows, "bytes": local.stat().st_size}

    def _publish(self, files: list[dict[str, Any]], staged: Staged, replaces: list[str]) -> str:
        schema = pl.scan_parquet(staged.files[0]).collect_schema()
        manifest = {
            "run_id": self.run_id,
            "format": self.settings.format,
            "written_at": datetime.now(UTC).isoformat(),
            "rows": sum(f["rows"] for f in files),
            "files": files,
            "schema": {name: str(dtype) for name, dtype in schema.items()},
            "replaces": replaces,
        }
        key = f"{self.prefix}{MANIFEST}{self.run_id}.json"
        self.client.put_object(
            Bucket=self.settings.bucket,
            Key=key,
            Body=json.dumps(manifest, indent=1).encode(),
            ContentType="application/json",
            **self.extra,
        )
        return key

    def _remove(self, manifests: list[str]) -> None:
        """Replaced manifests' files, then the manifests: readers no longer look at them."""
        bucket = self.settings.bucket
        for name in manifests:
            try:
                files = read_manifest(self.client, bucket, name)["files"]
            except self.client.exceptions.NoSuchKey:
                continue
            for item in files:
                self.client.delete_object(Bucket=bucket, Key=item["key"])
            self.client.delete_object(Bucket=bucket, Key=name)


def merged_schema(old: list[pl.Schema], new_file: Path) -> pl.Schema:
    """The new records' columns, then columns only older files have. A column whose type
    changed cannot be merged: the error says so rather than casting values away."""
    schema = dict(pl.read_parquet_schema(new_file))
    for columns in old:
        for name, dtype in columns.items():
            if name not in schema:
                schema[name] = dtype
            elif schema[name] != dtype:
                raise ValueError(
                    f"column '{name}' was written as {dtype} and is now {schema[name]}; "
                    "an upsert cannot change a column's type: run once with write: overwrite"
                )
    return pl.Schema(schema)


def conform(have: pl.Schema, want: pl.Schema) -> list[pl.Expr]:
    return [
        pl.col(name) if name in have else pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in want.items()
    ]


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def read_manifest(client: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def live_manifests(client: Any, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    """The manifests under prefix that no other manifest replaces: the published runs."""
    manifests = {}
    for key in list_keys(client, bucket, prefix):
        if key.rsplit("/", 1)[-1].startswith(MANIFEST):
            try:
                manifests[key] = read_manifest(client, bucket, key)
            except client.exceptions.NoSuchKey:  # replaced and removed since the listing
                continue
    replaced = {name for m in manifests.values() for name in m.get("replaces", [])}
    return {k: m for k, m in sorted(manifests.items()) if k not in replaced}


def published_files(client: Any, bucket: str, prefix: str) -> list[str]:
    """Keys of every file a live manifest under prefix names: what readers should read."""
    return [f["key"] for m in live_manifests(client, bucket, prefix).values() for f in m["files"]]


def _published(result: S3WriteResult, settings: S3Settings) -> dict[str, Any]:
    return {
        "prefix": result.prefix,
        "dagster/row_count": result.rows,
        "manifest": f"s3://{settings.bucket}/{result.manifest}",
        "files": len(result.files),
        "bytes": result.bytes,
    }


def resolve_kms_key(settings: S3Settings, connection: AwsConnection) -> S3Settings:
    """An alias becomes its key's ARN before anything is written: a missing key fails the run
    up front, and the objects name the key itself, as S3 reports it."""
    enc = settings.encryption
    if enc is None or enc.type != "sse-kms" or not enc.kms_key_id:
        return settings
    kms = connection.client("kms")
    try:
        arn = kms.describe_key(KeyId=enc.kms_key_id)["KeyMetadata"]["Arn"]
    except kms.exceptions.NotFoundException:
        raise dg.Failure(
            f"destination.s3.encryption.kms_key_id: KMS key '{enc.kms_key_id}' not found in "
            f"{connection.region_name}; create it or fix the flow file"
        ) from None
    return settings.model_copy(update={"encryption": enc.model_copy(update={"kms_key_id": arn})})


class S3IOManager(dg.ConfigurableIOManager):
    """Writes an asset's staged records to the S3 destination its definition declares."""

    connection: AwsConnection

    def handle_output(self, context: dg.OutputContext, obj: Staged) -> None:
        meta = context.definition_metadata or {}
        settings = S3Settings.model_validate_json(str(meta["flowbridge/settings"]))
        flow = context.asset_key.path[0]
        started = datetime.now(UTC)  # the run's time decides its year=/month=/day= folders
        settings = resolve_kms_key(settings, self.connection)
        mode = str(meta.get("flowbridge/write", "append"))
        key = [k for k in str(meta.get("flowbridge/key", "")).split(",") if k]
        columns = pl.scan_parquet(obj.files[0]).collect_schema()
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if settings.format == "delta":
                written = write_delta(obj, settings, flow, self.connection, mode, key)
            else:
                writer = S3Writer(
                    self.connection.client("s3"), settings, flow, context.run_id, started
                )
                written = _published(writer.write(obj, mode, key), settings)
        except (BotoCoreError, ClientError) as exc:  # say which destination, then what AWS said
            where = f"s3://{settings.bucket}/{settings.prefix.strip('/') or flow}/"
            raise dg.Failure(
                f"S3 destination {where} ({mode}): {exc}; nothing was published"
            ) from None
        if settings.glue is not None:
            table = register(
                self.connection.client("glue"), settings, flow, columns, written["prefix"]
            )
            written["glue_table"] = table
        context.add_output_metadata(
            {
                "rows_written": obj.rows,
                "write_mode": mode,
                "destination": f"s3://{settings.bucket}/{written.pop('prefix')}",
                "format": settings.format,
                "encryption": settings.encryption.type if settings.encryption else "none",
                "dagster/column_schema": table_schema(columns),
                **written,
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame:
        raise NotImplementedError("reading back from the S3 destination comes with S3 sources")
