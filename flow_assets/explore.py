"""Notebook helpers: what a flow extracted, loaded and rejected, as Polars frames or via DuckDB.

Masked fields stay masked here too: the extracted (staged) data is shown with the flow's masks
applied unless the caller asks for the raw values explicitly.
"""

from __future__ import annotations

import duckdb
import polars as pl

from flow_assets.destinations.lake import Lake
from flow_assets.environment import Settings
from flow_assets.spec import FlowSpec, load_flow_file
from flow_assets.spec.models import MaskSpec
from flow_assets.transforms.masking import mask_expr


def settings() -> Settings:
    return Settings.from_env()


def flow_spec(flow: str) -> FlowSpec:
    return load_flow_file(settings().flows_dir / f"{flow}.yaml")


def lake() -> Lake:
    return Lake(settings().lake_dir)


def records(flow: str) -> pl.DataFrame:
    """The flow's destination table in the lake (its Parquet copy)."""
    spec = flow_spec(flow)
    return lake().scan(spec.destination.table or spec.name).collect()


def rejected(flow: str) -> pl.DataFrame:
    """Records that failed validation, with `_fb_reason`, `_fb_run_id` and `_fb_rejected_at`."""
    spec = flow_spec(flow)
    table = f"{spec.destination.table or spec.name}__rejected"
    try:
        return lake().scan(table).collect()
    except FileNotFoundError:
        return pl.DataFrame()


def extracted(flow: str, raw: bool = False) -> pl.LazyFrame:
    """What the last run read from the source, typed, before the flow's tasks ran."""
    from flow_assets.definitions import staging_and_errors

    staging, _ = staging_and_errors(settings())  # masked fields' raw values are encrypted
    frame = pl.concat(list(staging.read_batches(flow, "extracted")), how="vertical").lazy()
    spec = flow_spec(flow)
    if raw or spec.source.mask_at_source:  # masked while extracting: nothing raw is stored
        return frame
    columns = frame.collect_schema()
    masks = [s for s in spec.task_specs if isinstance(s, MaskSpec)]
    # Masks that name a source field are applied as written; salted or keyed ones cannot be
    # reproduced without the secret, so those fields are withheld instead.
    return frame.with_columns(
        mask_expr(s) if not s.secret else pl.lit("<masked>").alias(s.field)
        for s in masks
        if s.field in columns
    )


def sql(query: str) -> pl.DataFrame:
    """Run SQL against the lake's DuckDB database (read-only) and return a Polars frame."""
    with duckdb.connect(str(lake().database), read_only=True) as con:
        return con.sql(query).pl()
