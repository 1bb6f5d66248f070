"""A flow's own pandera model: loaded from the flows folder, failing records routed with the
column and check that failed, bad references named."""

import pandera.polars as pa
import polars as pl
import pytest

from flow_assets.destinations.lake import Lake
from flow_assets.spec.models import ValidationModel
from flow_assets.transforms.tasks import REASON, STATUS, TaskError
from flow_assets.transforms.user_model import apply_model, load_model
from tests.conftest import failure_message, live_opportunities, materialization, run_flow

FLOW = "salesforce_big_opportunities"
CHECKS = """\
import pandera.polars as pa


class BigDeals(pa.DataFrameModel):
    amount_usd: float = pa.Field(le=150_000, nullable=True)
    stage: str = pa.Field(str_length={"min_value": 3})


class NeedsRegion(pa.DataFrameModel):
    Region__c: str


NOT_A_MODEL = 42
"""


class Positive(pa.DataFrameModel):
    n: int = pa.Field(gt=0, nullable=True)
    name: str = pa.Field(str_length={"max_value": 3})


def annotated(frame: pl.DataFrame, statuses: list) -> pl.DataFrame:
    return frame.with_columns(
        pl.Series(STATUS, statuses, dtype=pl.String), pl.Series(REASON, statuses, dtype=pl.String)
    )


def test_failing_records_get_the_column_and_check():
    frame = pl.DataFrame({"n": [1, -2, None, -4, 5], "name": ["ab", "abc", "x", "abcd", "long"]})
    before = annotated(frame, [None, None, None, "filtered", None])
    out = apply_model(before, Positive.to_schema(), "quarantine")
    assert out.select(STATUS, REASON).rows() == [
        (None, None),
        ("rejected", "n: greater_than(0)"),
        (None, None),  # null passes a nullable field's check
        ("filtered", "filtered"),  # already out: not checked again
        ("rejected", "name: str_length(None, 3)"),
    ]
    assert out.drop(STATUS, REASON).equals(frame)
    dropped = apply_model(before, Positive.to_schema(), "drop")
    assert dropped[STATUS].to_list() == [None, "dropped", None, "filtered", "dropped"]


def test_an_empty_batch_and_a_clean_batch_pass_unchanged():
    empty = annotated(pl.DataFrame(schema={"n": pl.Int64, "name": pl.String}), [])
    assert apply_model(empty, Positive.to_schema(), "quarantine").equals(empty)
    clean = annotated(pl.DataFrame({"n": [1], "name": ["a"]}), [None])
    assert apply_model(clean, Positive.to_schema(), "quarantine").equals(clean)


def test_a_column_the_model_needs_but_the_data_lacks_fails_the_batch():
    frame = annotated(pl.DataFrame({"n": [1]}), [None])
    with pytest.raises(
        TaskError, match=r"'column_in_dataframe' fails for the data as a whole \(Positive: name\)"
    ):
        apply_model(frame, Positive.to_schema(), "quarantine")


def test_references_are_checked(tmp_path):
    (tmp_path / "fb_checks_refs.py").write_text(CHECKS)
    found = load_model(ValidationModel(model="fb_checks_refs:BigDeals"), tmp_path, "f.yaml")
    assert set(found.columns) == {"amount_usd", "stage"}
    with pytest.raises(TaskError, match=r"f.yaml: validation.model: cannot import 'nope'"):
        load_model(ValidationModel(model="nope:X"), tmp_path, "f.yaml")
    with pytest.raises(TaskError, match="'NOT_A_MODEL' in fb_checks_refs is not a pandera"):
        load_model(ValidationModel(model="fb_checks_refs:NOT_A_MODEL"), tmp_path, "f.yaml")
    with pytest.raises(ValueError, match="validation.model|String should match pattern"):
        ValidationModel(model="no colon here")


def use_model(project, name: str) -> None:
    (project.flows_dir / "flow_model_checks.py").write_text(CHECKS)
    path = project.flows_dir / f"{FLOW}.yaml"
    path.write_text(path.read_text() + f"validation: {{model: 'flow_model_checks:{name}'}}\n")


def test_a_flow_routes_what_its_model_fails(project, instance, sf):
    use_model(project, "BigDeals")
    result = run_flow(project, instance, FLOW)
    assert result.success, failure_message(result)
    meta = materialization(result, FLOW, "records")
    rejected = materialization(result, FLOW, "rejected")
    assert meta["records_read"] == (
        meta["records_loaded"] + meta["records_filtered"] + meta["records_rejected"]
    )
    truth = live_opportunities(sf).filter(pl.col("Amount") > 10_000)
    too_big = set(truth.filter(pl.col("Amount") > 150_000)["Id"])
    assert too_big, "the sandbox should have deals over 150k"
    errors = Lake(project.lake_dir).scan(f"{FLOW}__rejected").collect()
    by_model = errors.filter(pl.col("_fb_reason") == "amount_usd: less_than_or_equal_to(150000)")
    earlier = errors.filter(pl.col("_fb_reason") != "amount_usd: less_than_or_equal_to(150000)")
    # Every big deal is rejected: by the model, or by an earlier task (which it never saw).
    assert set(by_model["Id"]) == too_big - set(earlier["Id"])
    assert by_model.height > 0 and rejected["records_rejected"] == errors.height
    loaded = Lake(project.lake_dir).scan(FLOW).collect()
    assert not set(loaded["Id"]) & too_big


def test_a_model_needing_a_missing_column_fails_the_run_clearly(project, instance, sf):
    use_model(project, "NeedsRegion")
    result = run_flow(project, instance, FLOW)
    assert not result.success
    assert "'column_in_dataframe' fails for the data as a whole (NeedsRegion: Region__c)" in (
        failure_message(result)
    )
