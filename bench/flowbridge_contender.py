"""Flowbridge: the benchmark flow file run as its Dagster job, through the public entry points."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import polars as pl

from bench.common import Result
from flow_assets.definitions import build_definitions
from flow_assets.environment import Settings
from flow_assets.runner import QUIET, failure_messages, records_metadata

FLOWS_DIR = Path(__file__).resolve().parent / "flows"
FLOW = "bench_opportunities"
# Event kinds whose timestamps split a step into phases (start, output, IO manager, check, end).
PHASE_EVENTS = {
    "STEP_START": "start",
    "STEP_OUTPUT": "output",
    "HANDLED_OUTPUT": "stored",
    "ASSET_CHECK_EVALUATION": "checked",
    "STEP_SUCCESS": "success",
}


def run(workdir: Path) -> Result:
    settings = Settings(environment="LOCAL", flows_dir=FLOWS_DIR, data_dir=workdir / "data")
    job = build_definitions(settings).resolve_job_def(f"{FLOW}_job")
    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    outcome = job.execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False)
    seconds = time.perf_counter() - started
    if not outcome.success:
        raise RuntimeError("flowbridge job failed: " + " | ".join(failure_messages(outcome)))
    meta = records_metadata(outcome, FLOW)
    lake_rows = pl.scan_parquet(str(meta["parquet"])).select(pl.len()).collect().item()
    return Result(
        contender="flowbridge",
        records_read=int(meta["records_read"]),
        records_loaded=int(meta["records_loaded"]),
        records_filtered=int(meta["records_filtered"]),
        records_rejected=int(meta["records_rejected"]),
        seconds=seconds,
        rows_in_destination=int(lake_rows),
        phases=phases(instance, outcome.run_id),
    )


def _output(event: dg.DagsterEvent) -> str:
    data = event.event_specific_data
    handle = getattr(data, "step_output_handle", None)
    return getattr(handle, "output_name", None) or getattr(data, "output_name", None) or ""


def phases(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds between consecutive step events, e.g. 'extracted: start -> output'."""
    marks: list[tuple[str, float]] = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.event_type_value not in PHASE_EVENTS:
            continue
        label = " ".join(filter(None, [PHASE_EVENTS[event.event_type_value], _output(event)]))
        step = (event.step_key or "").removeprefix(f"{FLOW}__")
        marks.append((f"{step}: {label}", entry.timestamp))
    return {
        f"{a} -> {b.split(': ', 1)[1]}": round(t2 - t1, 3)
        for (a, t1), (b, t2) in zip(marks, marks[1:], strict=False)
        if a.split(":")[0] == b.split(":")[0]
    }
