"""AppFlow's task vocabulary (map_all, arithmetic, merge, truncate, cast, mask hmac, format
date, and every filter operator) against hand-computed frames, nulls, empty and wrong types."""

import hashlib
import hmac
import random
from datetime import UTC, date, datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from pydantic import ValidationError

from flow_assets.transforms import REASON, STATUS, TaskError, annotate
from tests.transforms.test_tasks import count, flow, run


def loaded(out: pl.DataFrame) -> pl.DataFrame:
    return out.filter(pl.col(STATUS).is_null()).drop(STATUS, REASON)


# map_all


PEOPLE = pl.DataFrame({"Id": ["a", "b"], "Name": ["Ann", None], "Ssn": ["123", "456"]})


def test_map_all_passes_every_field_and_removes_the_excluded():
    assert_frame_equal(loaded(run(PEOPLE, {"map_all": {}})), PEOPLE)
    assert_frame_equal(loaded(run(PEOPLE, {"map_all": None})), PEOPLE)
    out = run(PEOPLE, {"map_all": {"exclude": ["Ssn", "Name"]}})
    assert_frame_equal(loaded(out), PEOPLE.select("Id"))
    assert out[STATUS].to_list() == [None, None]  # excluding fields removes no record


def test_map_all_unknown_excluded_field_names_file_task_and_field():
    with pytest.raises(TaskError) as info:
        annotate(PEOPLE.lazy(), flow({"map_all": {"exclude": ["Sn"]}}), file="people.yaml")
    assert str(info.value).startswith("people.yaml: tasks[0].map_all: field 'Sn': ")
    assert "cannot exclude 'Sn': it is not a field here" in str(info.value)


# arithmetic

NUMBERS = pl.DataFrame(
    {
        "a": [10, 7, None, 4],
        "b": [2, 0, 3, None],
        "f": [1.5, 0.0, 2.0, None],
        "s": ["1", "2", "3", "4"],
    }
)


@pytest.mark.parametrize(
    ("operator", "operands", "expected", "dtype"),
    [
        ("add", ["a", "b"], [12, 7, None, None], pl.Int64),
        ("subtract", ["a", "b"], [8, 7, None, None], pl.Int64),
        ("multiply", ["a", "b"], [20, 0, None, None], pl.Int64),
        ("divide", ["a", "b"], [5.0, None, None, None], pl.Float64),  # 7 / 0 is null
        ("subtract", ["a", 1], [9, 6, None, 3], pl.Int64),
        ("multiply", [0.5, "a"], [5.0, 3.5, None, 2.0], pl.Float64),
        ("divide", [100, "a"], [10.0, 100 / 7, None, 25.0], pl.Float64),
        ("divide", ["a", 0], [None, None, None, None], pl.Float64),
        ("divide", ["a", "f"], [10 / 1.5, None, None, None], pl.Float64),  # 7 / 0.0 is null
    ],
)
def test_arithmetic(operator, operands, expected, dtype):
    spec = {"field": "r", "operator": operator, "operands": operands}
    out = run(NUMBERS, {"arithmetic": spec})
    assert_frame_equal(out.select("r"), pl.DataFrame({"r": expected}, schema={"r": dtype}))
    assert out[STATUS].to_list() == [None] * 4  # arithmetic removes no record


def test_arithmetic_replaces_an_existing_field_and_runs_on_empty_frames():
    out = run(NUMBERS, {"arithmetic": {"field": "a", "operator": "add", "operands": ["a", "a"]}})
    assert out["a"].to_list() == [20, 14, None, 8]
    assert out.columns[:4] == NUMBERS.columns
    empty = run(NUMBERS.clear(), {"arithmetic": {"field": "r", "operator": "divide",
                                                 "operands": ["a", "b"]}})  # fmt: skip
    assert empty.height == 0
    assert empty.schema["r"] == pl.Float64


@pytest.mark.parametrize(
    ("operands", "field", "message"),
    [
        (["a", "s"], "s", "'s' is String, not a number; cast it first"),
        (["Nope", 1], "Nope", "'Nope' is not a field here"),
    ],
)
def test_arithmetic_on_a_wrong_field_names_file_task_and_field(operands, field, message):
    task = {"arithmetic": {"field": "r", "operator": "add", "operands": operands}}
    with pytest.raises(TaskError) as info:
        annotate(NUMBERS.clear().lazy(), flow(task), file="n.yaml")
    assert str(info.value) == f"n.yaml: tasks[0].arithmetic: field '{field}': {message}" + (
        " (cast: {field: s, type: float})" if field == "s" else ""
    )


def test_arithmetic_spec_needs_two_operands_and_a_field():
    with pytest.raises(ValidationError, match="at least one operand is a field"):
        flow({"arithmetic": {"field": "r", "operator": "add", "operands": [1, 2]}})
    with pytest.raises(ValidationError, match="at most 2 items"):
        flow({"arithmetic": {"field": "r", "operator": "add", "operands": ["a", "b", "f"]}})
    with pytest.raises(ValidationError, match="not true or false"):
        flow({"arithmetic": {"field": "r", "operator": "add", "operands": ["a", True]}})


# merge


def test_merge_fills_the_format_and_a_null_part_is_empty():
    frame = pl.DataFrame(
        {
            "First": ["Ann", None, "Bo", None],
            "Last": ["Lee", "Kim", None, None],
            "Age": [30, 41, None, 5],
            "Since": [date(2024, 1, 2), None, None, None],
        }
    )
    task = {"merge": {"field": "Label", "format": "{Last}, {First} ({Age}) {{since {Since}}}"}}
    out = run(frame, task)
    assert out["Label"].to_list() == [
        "Lee, Ann (30) {since 2024-01-02}",
        "Kim,  (41) {since }",
        ", Bo () {since }",
        ",  (5) {since }",
    ]
    assert out[STATUS].to_list() == [None] * 4
    empty = run(frame.clear(), task)
    assert empty.height == 0
    assert empty.schema["Label"] == pl.String


def test_merge_unknown_field_names_file_task_and_field():
    with pytest.raises(TaskError) as info:
        annotate(PEOPLE.lazy(), flow({"merge": {"field": "x", "format": "{Name} {Nmae}"}}),
                 file="p.yaml")  # fmt: skip
    message = "p.yaml: tasks[0].merge: field 'Nmae': '{Nmae}' in format is not a field here"
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{First", "expected '}'"),
        ("no fields", "format names no field"),
        ("{}", "name each field as {Field}"),
        ("{Age:>5}", "name each field as {Field}"),
    ],
)
def test_merge_format_must_name_fields(template, message):
    with pytest.raises(ValidationError, match=message):
        flow({"merge": {"field": "x", "format": template}})


# truncate


def test_truncate_cuts_characters_not_bytes():
    frame = pl.DataFrame({"t": ["héllo wörld", "abc", "", None, "日本語テキスト"]})
    out = run(frame, {"truncate": {"field": "t", "length": 3}})
    assert out["t"].to_list() == ["hél", "abc", "", None, "日本語"]
    assert run(frame.clear(), {"truncate": {"field": "t", "length": 3}}).height == 0


def test_truncate_on_a_number_names_file_task_and_field():
    with pytest.raises(TaskError) as info:
        annotate(NUMBERS.lazy(), flow({"truncate": {"field": "a", "length": 1}}), file="n.yaml")
    assert str(info.value).startswith(
        "n.yaml: tasks[0].truncate: field 'a': truncate works on text, and 'a' is Int64"
    )
    with pytest.raises(ValidationError, match="greater than 0"):
        flow({"truncate": {"field": "a", "length": 0}})


# cast


@pytest.mark.parametrize(
    ("values", "type_", "expected", "rejected"),
    [
        (["1", " 2", "x", None], "integer", [1, None, None, None], [1, 2]),
        (["1.5", "-2e3", "x", None], "float", [1.5, -2000.0, None, None], [2]),
        (["true", "No", "maybe", None], "boolean", [True, False, None, None], [2]),
        (["2024-02-29", "2023-02-29", "x", None], "date",
         [date(2024, 2, 29), None, None, None], [1, 2]),
        (["2024-01-01T10:00:00Z", "x", "2024-01-01T11:30:00Z", None], "datetime",
         [datetime(2024, 1, 1, 10, tzinfo=UTC), None, datetime(2024, 1, 1, 11, 30, tzinfo=UTC),
          None], [1]),
    ],
)  # fmt: skip
def test_cast_rejects_what_does_not_cast(values, type_, expected, rejected):
    frame = pl.DataFrame({"Id": ["a", "b", "c", "d"], "v": values})
    out = run(frame, {"cast": {"field": "v", "type": type_}})
    assert out["v"].to_list() == expected
    statuses = [("rejected" if i in rejected else None) for i in range(4)]
    assert out[STATUS].to_list() == statuses
    reasons = [(f"v: not a valid {type_}" if i in rejected else None) for i in range(4)]
    assert out[REASON].to_list() == reasons  # a null is missing, not invalid: never rejected


def test_cast_number_to_string_and_empty_frame_and_unknown_field():
    out = run(NUMBERS, {"cast": {"field": "a", "type": "string"}})
    assert out["a"].to_list() == ["10", "7", None, "4"]
    empty = run(NUMBERS.clear(), {"cast": {"field": "s", "type": "integer"}})
    assert empty.height == 0
    assert empty.schema["s"] == pl.Int64
    with pytest.raises(TaskError, match=r"^f\.yaml: tasks\[0\]\.cast: 'Nope' is not a field"):
        annotate(NUMBERS.lazy(), flow({"cast": {"field": "Nope", "type": "float"}}),
                 file="f.yaml")  # fmt: skip


# mask: hmac


def random_strings(n: int) -> list[str | None]:
    rng = random.Random(5)
    alphabet = "abcXYZ019 @.-_éüß日本語🙂\n\t'\""
    values: list[str | None] = ["", None, "a" * 200]
    values += ["".join(rng.choices(alphabet, k=rng.randint(0, 40))) for _ in range(n)]
    return values


def test_mask_hmac_equals_python_hmac():
    values = random_strings(300)
    key = "k€y-" + "x" * 70  # longer than SHA-256's 64-byte block: hashed first, as RFC 2104 says
    out = run(pl.DataFrame({"e": values}), {"mask": {"field": "e", "how": "hmac",
              "key": "${KEY}"}}, salts={0: key})  # fmt: skip
    expected = [
        None if v is None else hmac.new(key.encode(), v.encode(), hashlib.sha256).hexdigest()
        for v in values
    ]
    assert out["e"].to_list() == expected


def test_mask_hmac_tokens_join_across_flows_and_differ_by_key():
    task = {"mask": {"field": "Id", "how": "hmac", "key": "${KEY}"}}
    one = run(pl.DataFrame({"Id": ["a", "b"]}), task, salts={0: "k1"})
    two = run(pl.DataFrame({"Id": ["b", "c"]}), task, salts={0: "k1"})
    assert one.join(two, on="Id")["Id"].to_list() == [one["Id"][1]]
    other = run(pl.DataFrame({"Id": ["a"]}), task, salts={0: "k2"})
    assert other["Id"][0] != one["Id"][0]


def test_mask_hmac_without_its_key_value_names_task_and_field():
    task = {"mask": {"field": "Id", "how": "hmac", "key": "${KEY}"}}
    with pytest.raises(TaskError, match=r"tasks\[0\]\.mask: .*'Id'.*needs the value of its key"):
        run(pl.DataFrame({"Id": ["a"]}), task)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ({"how": "hmac"}, "mask 'hmac' needs key"),
        ({"how": "hmac", "key": "hunter2"}, "key is a secret"),
        ({"how": "hmac", "key": "${K:-hunter2}"}, "key is a secret"),
        ({"how": "sha256", "key": "${K}"}, "mask 'sha256' takes no key"),
        ({"how": "hmac", "key": "${K}", "salt": "${S}"}, "mask 'hmac' takes no salt"),
    ],
)
def test_mask_hmac_key_is_required_and_never_literal(mask, message):
    with pytest.raises(ValidationError, match=message) as info:
        flow({"mask": {"field": "Id", **mask}})
    assert all("hunter2" not in error["msg"] for error in info.value.errors())


# format: date


def test_format_date_tries_formats_in_order():
    frame = pl.DataFrame(
        {"d": ["01/02/2024", "13/02/2024", "5.3.2024", " 2024-04-05 ", "2024-02-30", "", None]}
    )
    spec = {"field": "d", "as": "date", "formats": ["%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y-%m-%d"],
            "into": "day"}  # fmt: skip
    out = run(frame, {"format": spec})
    assert out["day"].to_list() == [
        date(2024, 1, 2),  # the first format that parses wins: month first
        date(2024, 2, 13),  # no month 13, so the second format
        date(2024, 3, 5),
        date(2024, 4, 5),
        None,
        None,
        None,
    ]
    assert out[STATUS].to_list() == [None] * 7
    quarantined = run(frame, {"format": {**spec, "on_invalid": "quarantine"}})
    assert quarantined[STATUS].to_list() == [None] * 4 + ["rejected"] * 2 + [None]
    assert quarantined[REASON][4] == "d: not a valid date"
    assert run(frame.clear(), {"format": spec}).schema["day"] == pl.Date


def test_format_date_keeps_dates_and_needs_formats():
    frame = pl.DataFrame({"d": [date(2024, 1, 2), None], "t": [datetime(2024, 1, 2, 23), None]})
    spec = {"as": "date", "formats": ["%d.%m.%Y"]}
    assert run(frame, {"format": {"field": "d", **spec}})["d"].to_list() == [date(2024, 1, 2), None]
    assert run(frame, {"format": {"field": "t", **spec}})["t"].to_list() == [date(2024, 1, 2), None]
    with pytest.raises(ValidationError, match="format 'date' needs formats"):
        flow({"format": {"field": "d", "as": "date"}})
    with pytest.raises(ValidationError, match="format 'trim' takes no formats"):
        flow({"format": {"field": "d", "as": "trim", "formats": ["%Y"]}})


# filter: every operator on nulls, empty frames and wrong types

KINDS = pl.DataFrame(
    {
        "Id": ["a", "b", "c"],
        "n": [1, 2, None],
        "s": ["x", "y", None],
        "d": [date(2024, 1, 1), date(2024, 3, 1), None],
        "ok": [True, False, None],
        "none": pl.Series([None, None, None], dtype=pl.Null),
    }
)
OPERATORS = [
    ("equal_to", "x", 1, ["a"]),
    ("not_equal_to", "x", 1, ["b"]),
    ("less_than", "y", 2, ["a"]),
    ("less_than_or_equal_to", "y", 2, ["a", "b"]),
    ("greater_than", "x", 1, ["b"]),
    ("greater_than_or_equal_to", "x", 1, ["a", "b"]),
    ("between", ["x", "y"], [1, 2], ["a", "b"]),
    ("contains", "x", "1", ["a"]),
    ("in", ["y", "z"], [2, 3], ["b"]),
    ("not_in", ["y"], [2, 3], ["a"]),
    ("is_null", None, None, ["c"]),
    ("is_not_null", None, None, ["a", "b"]),
]


@pytest.mark.parametrize(("operator", "text", "number", "kept"), OPERATORS)
def test_every_filter_operator_on_text_numbers_nulls_and_empty_frames(operator, text, number, kept):
    for field, value in (("s", text), ("n", number)):
        out = run(KINDS, {"filter": {"field": field, "operator": operator, "value": value}})
        assert loaded(out)["Id"].to_list() == kept, field  # null is kept by is_null only
        removed = out.filter(pl.col(STATUS).is_not_null())
        assert removed[REASON].to_list() == [f"{field}: filter"] * removed.height
        empty = run(KINDS.clear(), {"filter": {"field": field, "operator": operator,
                                               "value": value}})  # fmt: skip
        assert empty.height == 0
    # A field that is null throughout (no type) matches only is_null.
    value = number if operator != "contains" else "1"
    out = run(KINDS, {"filter": {"field": "none", "operator": operator, "value": value}})
    assert loaded(out)["Id"].to_list() == (["a", "b", "c"] if operator == "is_null" else [])


def test_filter_in_on_dates_booleans_and_fractions():
    def kept(field, operator, value):
        out = run(KINDS, {"filter": {"field": field, "operator": operator, "value": value}})
        return loaded(out)["Id"].to_list()

    assert kept("d", "in", ["2024-03-01", date(2020, 1, 1)]) == ["b"]
    assert kept("d", "not_in", ["2024-03-01"]) == ["a"]
    assert kept("ok", "in", [False]) == ["b"]
    assert kept("n", "in", [1.5, 2]) == ["b"]  # 1.5 is in no integer field; no error
    assert kept("s", "between", ["a", "x"]) == ["a"]  # text bounds are values, not fields


@pytest.mark.parametrize(
    ("field", "operator", "value", "message"),
    [
        ("s", "equal_to", 5, "value 5 cannot be compared with s (String): not text; quote it"),
        ("s", "in", ["x", 5], "value 5 cannot be compared with s (String)"),
        ("s", "between", [date(2024, 1, 1), "z"], "cannot be compared with s (String)"),
        ("n", "greater_than", "ten", "value 'ten' cannot be compared with n (Int64): not a number"),
        ("n", "not_in", [True], "value True cannot be compared with n (Int64): not a number"),
        ("d", "less_than", "soon", "value 'soon' cannot be compared with d (Date)"),
        ("ok", "equal_to", 1, "value 1 cannot be compared with ok (Boolean): not true or false"),
    ],
)
def test_filter_with_a_wrong_type_names_file_task_and_field(field, operator, value, message):
    tasks = [{"map_all": {}}, {"filter": {"field": field, "operator": operator, "value": value}}]
    for frame in (KINDS, KINDS.clear()):
        with pytest.raises(TaskError) as info:
            annotate(frame.lazy(), flow(*tasks), file="k.yaml")
        assert str(info.value).startswith(f"k.yaml: tasks[1].filter: field '{field}': ")
        assert message in str(info.value)


def test_filter_on_an_unknown_field_names_file_task_and_field():
    with pytest.raises(TaskError) as info:
        annotate(KINDS.lazy(), flow({"filter": {"field": "Nope", "operator": "is_null"}}),
                 file="k.yaml")  # fmt: skip
    assert str(info.value) == "k.yaml: tasks[0].filter: field 'Nope': 'Nope' is not a field here"


# several tasks: every record read is loaded, filtered or rejected


def test_read_is_loaded_plus_filtered_plus_rejected_through_the_vocabulary():
    frame = pl.DataFrame(
        {
            "Id": ["1", "2", "3", "4", "5", "6"],
            "First": ["Ann", "Bo", None, "Cy", "Di", "Ed"],
            "Last": ["Lee", "Kim", "Moe", "Ng", "Oz", "Pu"],
            "Qty": ["2", "x", "4", "1", "3", "5"],
            "Price": [10.0, 5.0, 2.5, 0.0, None, -4.0],
            "Secret": ["s"] * 6,
        }
    )
    out = run(
        frame,
        {"map_all": {"exclude": ["Secret"]}},
        {"cast": {"field": "Qty", "type": "integer"}},  # '2' x -> rejected
        {"arithmetic": {"field": "Total", "operator": "multiply", "operands": ["Qty", "Price"]}},
        {"arithmetic": {"field": "Unit", "operator": "divide", "operands": ["Total", "Qty"]}},
        {"merge": {"field": "Name", "format": "{First} {Last}"}},
        {"truncate": {"field": "Name", "length": 5}},
        {"filter": {"field": "Total", "operator": "not_equal_to", "value": 0}},  # 0, null out
        {"validate": {"field": "First", "check": "non_null", "on_failure": "quarantine"}},
        {"validate": {"field": "Price", "check": "non_negative", "on_failure": "drop"}},
    )
    expected = pl.DataFrame(
        {
            "Id": ["1", "2", "3", "4", "5", "6"],
            "First": ["Ann", "Bo", None, "Cy", "Di", "Ed"],
            "Last": ["Lee", "Kim", "Moe", "Ng", "Oz", "Pu"],
            "Qty": [2, None, 4, 1, 3, 5],
            "Price": [10.0, 5.0, 2.5, 0.0, None, -4.0],
            "Total": [20.0, None, 10.0, 0.0, None, -20.0],
            "Unit": [10.0, None, 2.5, 0.0, None, -4.0],
            "Name": ["Ann L", "Bo Ki", " Moe", "Cy Ng", "Di Oz", "Ed Pu"],
            STATUS: [None, "rejected", "rejected", "filtered", "filtered", "dropped"],
            REASON: [
                None,
                "Qty: not a valid integer",
                "First: non_null",
                "Total: filter",
                "Total: filter",
                "Price: non_negative",
            ],
        }  # fmt: skip
    )
    assert_frame_equal(out.select(expected.columns), expected)
    outcome = count(out)
    assert (outcome.read, outcome.loaded, outcome.filtered, outcome.dropped) == (6, 1, 2, 1)
    assert outcome.rejected == 2
    # In the metadata a drop counts as filtered: read = loaded + filtered + rejected.
    meta = outcome.as_metadata()
    assert (meta["records_read"], meta["records_loaded"], meta["records_filtered"]) == (6, 1, 3)
    assert meta["records_loaded"] + meta["records_filtered"] + meta["records_rejected"] == 6


# the factory resolves hmac keys the way it resolves salts


def test_hmac_keys_are_resolved_from_the_environment_like_salts(monkeypatch, tmp_path):
    from flow_assets.factory import _salts
    from flow_assets.spec.env import MissingEnvironmentVariable

    spec = flow(
        {"mask": {"field": "a", "how": "sha256", "salt": "${T_SALT}"}},
        {"mask": {"field": "b", "how": "all"}},
        {"mask": {"field": "c", "how": "hmac", "key": "${T_KEY}"}},
    )
    monkeypatch.setenv("T_SALT", "pepper")
    monkeypatch.setenv("T_KEY", "k")
    assert _salts(spec, tmp_path / "f.yaml") == {0: "pepper", 2: "k"}
    monkeypatch.delenv("T_KEY")
    with pytest.raises(MissingEnvironmentVariable, match=r"tasks\[2\]\.mask\.key: .*T_KEY"):
        _salts(spec, tmp_path / "f.yaml")
