"""A flow's own pandera model (`validation: {model: module:Name}`): loaded from the flows folder
and run on each batch of records about to be loaded; the records it fails get the flow's
on_failure status and a reason naming the column and the check."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaError, SchemaErrors

from flow_assets.spec.models import ValidationModel
from flow_assets.transforms.tasks import ON_FAILURE_STATUS, REASON, STATUS, TaskError

ROW = "_fb_row"


def load_model(spec: ValidationModel, flows_dir: Path, file: str) -> pa.DataFrameSchema:
    """The model as a schema; errors name the flow file and what is wrong with the reference."""
    module_name, _, name = spec.model.partition(":")
    where = f"{file}: validation.model"
    sys.path.insert(0, str(flows_dir))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any error in it is theirs to see
        raise TaskError(f"{where}: cannot import '{module_name}': {exc}") from None
    finally:
        sys.path.remove(str(flows_dir))
    found = getattr(module, name, None)
    if isinstance(found, type) and issubclass(found, pa.DataFrameModel):
        return found.to_schema()
    if isinstance(found, pa.DataFrameSchema):
        return found
    raise TaskError(
        f"{where}: '{name}' in {module_name} is not a pandera.polars DataFrameModel or "
        f"DataFrameSchema ({type(found).__name__})"
    )


def apply_model(
    annotated: pl.DataFrame, schema: pa.DataFrameSchema, on_failure: str
) -> pl.DataFrame:
    """Mark the still-to-load records the model fails; the first failure of each is its reason.
    A failure of the data as a whole (a missing column, a wrong type) fails the run instead."""
    rows = annotated.with_row_index(ROW)
    loading = rows.filter(pl.col(STATUS).is_null())
    try:
        schema.validate(loading.drop(STATUS, REASON, ROW), lazy=True)
        return annotated
    except SchemaErrors as exc:
        cases = exc.failure_cases
    except SchemaError as exc:  # pandera raises this one for some schema-wide problems
        raise TaskError(f"validation.model {schema.name}: {exc}") from None
    whole = cases.filter(pl.col("index").is_null())
    if whole.height:
        first = whole.row(0, named=True)
        raise TaskError(
            # Schema-wide failures name columns and types, never a record's value.
            f"validation.model {schema.name or ''}: '{first['check']}' fails for the data as a "
            f"whole ({first['column']}: {str(first['failure_case'])[:80]}); nothing was loaded"
        )
    reasons = (
        cases.sort("index")
        .group_by("index", maintain_order=True)
        .first()
        .select(
            pl.col("index").cast(pl.UInt32),
            pl.format("{}: {}", pl.col("column"), pl.col("check")).alias("_fb_model_reason"),
        )
    )
    failed = (
        loading.select(ROW)
        .with_row_index("index")
        .join(reasons, on="index")
        .select(ROW, "_fb_model_reason")
    )
    hit = pl.col("_fb_model_reason").is_not_null()
    return (
        rows.join(failed, on=ROW, how="left")
        .with_columns(
            pl.when(hit)
            .then(pl.lit(ON_FAILURE_STATUS[on_failure]))
            .otherwise(pl.col(STATUS))
            .alias(STATUS),
            pl.when(hit).then(pl.col("_fb_model_reason")).otherwise(pl.col(REASON)).alias(REASON),
        )  # fmt: skip
        .sort(ROW)
        .drop(ROW, "_fb_model_reason")
    )
