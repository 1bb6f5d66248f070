"""What the sink acceptance suite needs from a SaaS destination: one SinkHarness per sink, in
SINKS of test_sinks.py. A new sink adds its harness (tests/acceptance/<vendor>_sink.py) and
passes every check there unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from flow_assets.destinations.lake import Lake
from flow_assets.destinations.saas_sink import SaasSinkIOManager
from flow_assets.destinations.staging import ParquetBatchWriter

# Faults every sandbox can inject mid-write, after `after` write requests went through.
FAULTS = ("expire_token", "429", "503")


@dataclass(frozen=True)
class SinkHarness:
    connector: str
    sandbox: Callable[[], AbstractContextManager[Any]]  # a started sandbox the suite may change
    io_manager: Callable[[Any, str], SaasSinkIOManager]  # (sandbox, error_root)
    settings: dict[str, Any]  # the destination's settings block, as a flow file has it
    key: str  # write upsert matches records on this field
    # (sandbox, n, tag) -> n records to write, keyed by `key`; the same n and tag give the same
    # keys, a new tag new values: what the sandbox will hold after an upsert of them.
    records: Callable[[Any, int, str], pl.DataFrame]
    held: Callable[[Any], pl.DataFrame]  # what the sandbox holds, columns as `records`
    # (sandbox) -> one record the vendor refuses, and the vendor's error code for it
    refused: Callable[[Any], tuple[pl.DataFrame, str]]
    inject: Callable[[Any, str, int], None]  # (sandbox, fault, after) -> one fault, once
    batch_size: int  # records per write call (the vendor's limit)
    name: str | None = None  # the test id, where one connector has several harnesses
    faults_pending: Callable[[Any], int] = lambda sandbox: len(sandbox.pending_faults())


def write(harness: SinkHarness, sandbox: Any, folder: Path, frame: pl.DataFrame,
          how: str = "upsert") -> dict[str, Any]:  # fmt: skip
    """`frame` staged as a flow stages it, written by the sink's IO manager; its metadata."""
    staged = folder / f"staged-{len(list(folder.glob('staged-*')))}"
    with ParquetBatchWriter(staged, frame.schema) as writer:
        writer.write(frame)
    manager = harness.io_manager(sandbox, str(folder / "lake"))
    context = dg.build_output_context(
        asset_key=dg.AssetKey(["acceptance", "records"]), run_id="run-1",
        definition_metadata={"flowbridge/settings": json.dumps(harness.settings),
                             "flowbridge/write": how, "flowbridge/key": harness.key},
    )  # fmt: skip
    manager.handle_output(context, writer.staged())
    return {k: getattr(v, "value", v) for k, v in context.get_logged_metadata().items()}


def rejected(folder: Path) -> pl.DataFrame:
    lake = Lake(folder / "lake")
    if "acceptance__rejected" not in lake.tables():
        return pl.DataFrame()
    return lake.scan("acceptance__rejected").collect()
