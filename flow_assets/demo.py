"""`make demo`: the bundled Salesforce sandbox -> the example flow -> the local lake, summarised."""

from __future__ import annotations

import os
from pathlib import Path

from flow_assets.definitions import build_definitions
from flow_assets.environment import Settings
from flow_assets.runner import QUIET, instance, records_metadata
from flow_assets.sandbox import SalesforceSandbox

DEMO_FLOW = "salesforce_big_opportunities"
DEMO_RECORDS = 5000


def run_demo(records: int = DEMO_RECORDS) -> int:
    settings = Settings.from_env()
    client_id = os.environ.setdefault("SALESFORCE_SANDBOX_CLIENT_ID", "flowbridge-sandbox")
    secret = os.environ.setdefault("SALESFORCE_SANDBOX_CLIENT_SECRET", "sandbox-secret")
    with SalesforceSandbox(records=records, client_id=client_id, client_secret=secret) as sandbox:
        os.environ["SALESFORCE_SANDBOX_URL"] = sandbox.url
        print(f"Salesforce sandbox at {sandbox.url} ({records:,} Opportunities)")
        defs = build_definitions(settings)
        result = defs.resolve_job_def(f"{DEMO_FLOW}_job").execute_in_process(
            instance=instance(), raise_on_error=False, run_config=QUIET
        )
    meta = records_metadata(result, DEMO_FLOW)
    if not result.success or not meta:
        from flow_assets.runner import summary

        print(summary(result, DEMO_FLOW))
        return 1
    print(_summary(settings, meta))
    return 0


def _summary(settings: Settings, meta: dict) -> str:
    cwd = Path.cwd()

    def rel(path: object) -> str:
        p = Path(str(path))
        return str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(p)

    lake = settings.lake_dir
    return f"""
Flow {DEMO_FLOW} (flow_defs/{DEMO_FLOW}.yaml)
  this run    read {meta["records_read"]:,} = loaded {meta["records_loaded"]:,}
              + filtered {meta["records_filtered"]:,} + rejected {meta["records_rejected"]:,}
              (a second run reads only what changed since the cursor: {meta.get("cursor") or "-"})
  lake table  {meta["dagster/row_count"]:,} records in {rel(lake / "lake.duckdb")}, table {DEMO_FLOW}
  parquet     {rel(meta["parquet"])}
  rejected    table {DEMO_FLOW}__rejected (each record with its _fb_reason)
  masked      {meta.get("masked_fields")}

Next
  make ui                              Dagster UI on http://127.0.0.1:3000 (asset group, check, schedule)
  make notebook                        notebooks/explore_opportunities.ipynb in Jupyter
  .venv/bin/flowbridge run {DEMO_FLOW} --full-refresh
"""
