"""The dlt side both dlt contenders share: a pipeline to local Parquet files, and its counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import dlt
import polars as pl

from bench.common import Result

TABLE = "opportunities"
DATASET = "bench"
# Typed like Flowbridge's output, so dlt does the same date and timestamp parsing.
COLUMN_HINTS = {
    "Amount": {"data_type": "double"},
    "CloseDate": {"data_type": "date"},
    "SystemModstamp": {"data_type": "timestamp"},
}


def pipeline(name: str, workdir: Path) -> dlt.Pipeline:
    """A pipeline whose state and files live under workdir: nothing in ~/.dlt or the repository."""
    return dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(workdir / "dlt-pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(workdir / "lake").as_uri()),
        dataset_name=DATASET,
        progress=None,
    )


def run(pipe: dlt.Pipeline, source: object) -> int:
    """Extract, normalize and load as Parquet; the rows normalized into the table."""
    pipe.run(source, loader_file_format="parquet")
    trace = pipe.last_trace
    info = trace.last_normalize_info if trace else None
    return int(info.row_counts.get(TABLE, 0)) if info else -1


def rows_written(workdir: Path) -> int:
    """Count the table's rows back from the Parquet files the filesystem destination wrote."""
    files = sorted((workdir / "lake" / DATASET / TABLE).rglob("*.parquet"))
    if not files:
        return 0
    return int(pl.scan_parquet(files).select(pl.len()).collect().item())


def timed_result(
    contender: str, workdir: Path, make_source: Callable[[], object], read: Callable[[], int]
) -> Result:
    """Run a dlt contender's pipeline, timed (building the source, token request included, as
    Flowbridge's run includes its own), and report it as the benchmark expects; dlt has no
    quarantine, so negative amounts are dropped and counted as filtered."""
    pipe = pipeline(f"bench_{contender.replace('-', '_')}", workdir)
    started = time.perf_counter()
    loaded = run(pipe, make_source())
    seconds = time.perf_counter() - started
    return Result(
        contender=contender,
        records_read=read(),
        records_loaded=loaded,
        records_filtered=read() - loaded,
        records_rejected=0,
        seconds=seconds,
        rows_in_destination=rows_written(workdir),
        notes=["quarantine approximated by dropping negative amounts (counted as filtered)"],
    )
