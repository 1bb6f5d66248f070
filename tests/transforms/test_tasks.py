"""Each task against hand-computed frames, with nulls, empty frames and wrong types."""

import hashlib
from datetime import UTC, date, datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.spec.models import FlowSpec
from flow_assets.transforms import REASON, STATUS, Outcome, Tally, TaskError, annotate


def flow(*tasks, **dest) -> FlowSpec:
    return FlowSpec.model_validate(
        {
            "name": "t",
            "source": {"connection": "c", "object": "O"},
            "tasks": list(tasks),
            "destination": dest or {},
        }  # fmt: skip
    )


def run(frame: pl.DataFrame, *tasks, salts=None) -> pl.DataFrame:
    return annotate(frame.lazy(), flow(*tasks), salts).collect()


def count(annotated: pl.DataFrame) -> Outcome:
    tally = Tally()
    tally.add(annotated, "Id")
    return tally.outcome


FRAME = pl.DataFrame(
    {
        "Id": ["a", "b", "c", "d"],
        "Amount": [5.0, 20_000.0, None, -3.0],
        "Stage": ["Won", "Lost", "Won", None],
        "Close": [date(2024, 1, 1), date(2024, 6, 1), None, date(2025, 1, 1)],
        "Seen": [datetime(2024, 1, 1, tzinfo=UTC)] * 4,
    }
)


@pytest.mark.parametrize(
    ("operator", "value", "kept"),
    [
        ("greater_than", 10, ["b"]),
        ("greater_than_or_equal_to", 5, ["a", "b"]),
        ("less_than", 5, ["d"]),
        ("less_than_or_equal_to", 5, ["a", "d"]),
        ("equal_to", 5, ["a"]),
        ("not_equal_to", 5, ["b", "d"]),
        ("between", [0, 10], ["a"]),
        ("in", [5, -3], ["a", "d"]),
        ("not_in", [5], ["b", "d"]),
        ("is_null", None, ["c"]),
        ("is_not_null", None, ["a", "b", "d"]),
    ],
)
def test_filter_operators_never_keep_null_comparisons(operator, value, kept):
    out = run(FRAME, {"filter": {"field": "Amount", "operator": operator, "value": value}})
    assert out.filter(pl.col(STATUS).is_null())["Id"].to_list() == kept
    assert set(out.filter(pl.col(STATUS).is_not_null())[STATUS]) <= {"filtered"}


def test_filter_on_dates_and_strings():
    out = run(
        FRAME, {"filter": {"field": "Close", "operator": "greater_than", "value": "2024-03-01"}}
    )
    assert out.filter(pl.col(STATUS).is_null())["Id"].to_list() == ["b", "d"]
    out = run(FRAME, {"filter": {"field": "Stage", "operator": "contains", "value": "on"}})
    assert out.filter(pl.col(STATUS).is_null())["Id"].to_list() == ["a", "c"]


def test_filter_with_wrong_type_names_task_and_field():
    with pytest.raises(TaskError, match=r"tasks\[0\]\.filter.*'Amount'.*cannot be compared"):
        run(FRAME, {"filter": {"field": "Amount", "operator": "equal_to", "value": "five"}})


def test_map_renames_and_casts_rejecting_what_does_not_cast():
    frame = pl.DataFrame({"Id": ["a", "b", "c"], "n": ["1", "x", None]})
    out = run(frame, {"map": {"n": {"to": "count", "type": "integer"}, "Id": "id"}})
    expected = pl.DataFrame(
        {
            "id": ["a", "b", "c"],
            "count": [1, None, None],
            STATUS: [None, "rejected", None],
            REASON: [None, "count: not a valid integer", None],
        },  # fmt: skip
        schema_overrides={"count": pl.Int64},
    )
    assert_frame_equal(out, expected)


def test_map_onto_existing_field_is_an_error():
    with pytest.raises(TaskError, match="Stage.*exists already"):
        run(FRAME, {"map": {"Id": "Stage"}})


def test_compute_with_sql_expression():
    out = run(FRAME, {"compute": {"field": "double", "expression": "Amount * 2"}})
    assert out["double"].to_list() == [10.0, 40_000.0, None, -6.0]
    with pytest.raises(TaskError, match=r"tasks\[0\]\.compute"):
        run(FRAME, {"compute": {"field": "x", "expression": "Nope + 1"}})


def test_masks():
    frame = pl.DataFrame({"e": ["secret@x.io", "ab", None]})
    assert run(frame, {"mask": {"field": "e", "how": "all"}})["e"].to_list() == [
        "***********",
        "**",
        None,
    ]
    assert run(frame, {"mask": {"field": "e", "how": "first_n", "n": 3, "char": "#"}})["e"].to_list() == [
        "###ret@x.io", "##", None]  # fmt: skip
    assert run(frame, {"mask": {"field": "e", "how": "last_n", "n": 4}})["e"].to_list() == [
        "secret@****", "**", None]  # fmt: skip
    out = run(
        frame, {"mask": {"field": "e", "how": "sha256", "salt": "${SALT}"}}, salts={0: "pepper"}
    )
    assert out["e"][0] == hashlib.sha256(b"peppersecret@x.io").hexdigest()
    assert out["e"][2] is None


def test_format_phone_and_email():
    frame = pl.DataFrame(
        {
            "p": [
                "(415) 555-0123",
                "415.555.0123",
                "+1 415-555-0123",
                "14155550123",
                "+44 20 7946 0958",
                "12",
                None,
            ],
            "e": [" Ann@Example.COM ", "bad", None, "a@b.co", "x@y.z", "", None],
        }  # fmt: skip
    )
    out = run(frame, {"format": {"field": "p", "as": "phone_e164", "into": "p164"}},
              {"format": {"field": "e", "as": "email"}})  # fmt: skip
    assert out["p164"].to_list() == ["+14155550123"] * 4 + ["+442079460958", None, None]
    assert out["e"].to_list() == ["ann@example.com", None, None, "a@b.co", "x@y.z", None, None]
    out = run(frame, {"format": {"field": "p", "as": "phone_e164", "on_invalid": "quarantine"}})
    assert out[STATUS].to_list() == [None] * 5 + ["rejected", None]


@pytest.mark.parametrize(
    ("check", "failing"),
    [("non_null", ["c"]), ("non_negative", ["d"]), ("non_zero", []), ("numeric", [])],
)
def test_validate_checks(check, failing):
    out = run(FRAME, {"validate": {"field": "Amount", "check": check}})
    assert out.filter(pl.col(STATUS) == "rejected")["Id"].to_list() == failing
    assert set(out.filter(pl.col(STATUS) == "rejected")[REASON]) <= {f"Amount: {check}"}


def test_validate_numeric_on_strings_and_actions():
    frame = pl.DataFrame({"Id": ["a", "b", "c", "d"], "n": ["1.5", "-2e3", "x1", None]})
    out = run(frame, {"validate": {"field": "n", "check": "numeric", "on_failure": "drop"}})
    assert out[STATUS].to_list() == [None, None, "dropped", None]
    out = run(frame, {"validate": {"field": "n", "check": "numeric", "on_failure": "fail"}})
    assert out[STATUS].to_list() == [None, None, "failed", None]


def test_first_task_to_remove_a_record_decides_its_status():
    out = run(
        FRAME,
        {"validate": {"field": "Amount", "check": "non_negative"}},
        {"filter": {"field": "Amount", "operator": "greater_than", "value": 10}},
    )
    assert out[STATUS].to_list() == ["filtered", None, "filtered", "rejected"]
    outcome = count(out)
    assert (outcome.read, outcome.loaded, outcome.filtered, outcome.rejected) == (4, 1, 2, 1)
    assert outcome.read == outcome.loaded + outcome.filtered + outcome.dropped + outcome.rejected


def test_empty_frame_passes_through_every_task():
    empty = FRAME.clear()
    out = run(
        empty,
        {"filter": {"field": "Amount", "operator": "greater_than", "value": 10}},
        {"map": {"Amount": "amount"}},
        {"mask": {"field": "Stage", "how": "sha256"}},
        {"validate": {"field": "amount", "check": "non_negative"}},
    )
    assert out.height == 0
    assert count(out).read == 0


def test_error_messages_carry_no_sample_values():
    """Polars puts sample values in cast errors; they may be raw values of a masked field."""
    from flow_assets.transforms.tasks import short_error

    frame = pl.DataFrame({"Email__c": ["ada@example.com", "x"]})
    with pytest.raises(pl.exceptions.InvalidOperationError) as failed:
        frame.select(pl.col("Email__c").cast(pl.Float64, strict=True))
    assert "ada@example.com" in str(failed.value)
    message = short_error(failed.value)
    assert "ada@example.com" not in message
    assert message.endswith("for 2 out of 2 values: [...]")
