"""Run a flow from a terminal (`flowbridge run`) and summarise what it moved."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from flow_assets.audit import TRIGGER_TAG
from flow_assets.definitions import build_definitions
from flow_assets.environment import Settings
from flow_assets.factory import FULL_REFRESH_TAG, asset_key
from flow_assets.partitions import check_partition_key, partition_run

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Retries and re-authentications (logged by flow_assets) show in the run's event log.
DAGSTER_YAML = """\
telemetry:
  enabled: false
python_logs:
  managed_python_loggers: [flow_assets]
"""


def instance() -> dg.DagsterInstance:
    """The project's Dagster instance (DAGSTER_HOME, default ./.dagster_home), so cursors persist."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return dg.DagsterInstance.get()


def run_flow(
    name: str,
    full_refresh: bool = False,
    settings: Settings | None = None,
    partition: str | None = None,
) -> int:
    """Run the flow's job in this process, stored in DAGSTER_HOME's instance; `partition` is
    a key, or FIRST...LAST for a range pulled in one run."""
    settings = settings or Settings.from_env()
    defs = build_definitions(settings)
    job_name = f"{name}_job"
    jobs = sorted(j.name.removesuffix("_job") for j in defs.resolve_all_job_defs())
    if job_name not in {j.name for j in defs.resolve_all_job_defs()}:
        print(
            f"no flow named '{name}' loaded from {settings.flows_dir}; flows: {', '.join(jobs)}"
            " (run `flowbridge validate` to see files that did not load)",
            file=sys.stderr,
        )
        return 2
    tags = {TRIGGER_TAG: "cli", **({FULL_REFRESH_TAG: "true"} if full_refresh else {})}
    job = defs.resolve_job_def(job_name)
    problem = check_partition_key(name, job.partitions_def, partition)
    if problem:
        print(f"flow {name}: {problem}", file=sys.stderr)
        return 2
    run: dict[str, Any] = partition_run(partition) if partition else {}
    tags.update(run.pop("tags", {}))
    try:
        result = job.execute_in_process(
            instance=instance(), tags=tags, raise_on_error=False, run_config=QUIET, **run
        )
    except dg.DagsterInvalidConfigError as exc:
        print(f"flow {name}: cannot start: {exc}", file=sys.stderr)
        return 1
    print(summary(result, name))
    return 0 if result.success else 1


def run_url(run_id: str) -> str:
    """The run's page in the Dagster UI (`make ui` serves the same DAGSTER_HOME)."""
    base = os.environ.get("DAGSTER_WEBSERVER_URL") or "http://127.0.0.1:3000"
    return f"{base.rstrip('/')}/runs/{run_id}"


def records_metadata(result: dg.ExecuteInProcessResult, flow: str) -> dict[str, object]:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        if mat.asset_key == asset_key(flow, "records"):
            return {k: v.value for k, v in mat.metadata.items()}
    return {}


def summary(result: dg.ExecuteInProcessResult, flow: str) -> str:
    meta = records_metadata(result, flow)
    lines = [f"flow {flow}: run {result.run_id} {'succeeded' if result.success else 'FAILED'}"]
    lines.append(f"  run: {run_url(result.run_id)}")
    if meta:
        lines.append(
            "  records read {records_read}, loaded {records_loaded}, filtered {records_filtered}, "
            "rejected {records_rejected}".format(**meta)
        )
        lines.append(f"  in the destination now: {meta.get('dagster/row_count')} records")
        lines.append(f"  destination: {meta.get('destination')}")
        lines.append(f"  parquet: {meta.get('parquet')}")
        if meta.get("cursor"):
            lines.append(f"  cursor (high-water mark): {meta['cursor']}")
    if not result.success:
        lines.extend(f"  error: {message}" for message in failure_messages(result))
    return "\n".join(lines)


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """Each failed step's error, with the causes Dagster wraps around user errors unwrapped."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data:
            error = event.step_failure_data.error
            parts = []
            while error is not None:
                text = error.message.strip()
                if not text.startswith("dagster._core.errors."):
                    parts.append(text)
                error = error.cause or error.context
            messages.append(" <- ".join(parts) or event.step_failure_data.error.message.strip())
    return messages
