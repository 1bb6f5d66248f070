"""Apply a flow's tasks to a LazyFrame. Rows are never removed here: each row gets a status
(null = to load, or filtered / dropped / rejected / failed) and a reason, so every record read
is accounted for and the caller routes them with one pass over the data."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
from pydantic import BaseModel

from flow_assets.spec.models import (
    ArithmeticSpec,
    CastSpec,
    ComputeSpec,
    FilterSpec,
    FilterTask,
    FlowSpec,
    FormatSpec,
    MapAllSpec,
    MapTarget,
    MapTask,
    MaskSpec,
    MergeSpec,
    TruncateSpec,
    ValidateSpec,
    task_kind,
)
from flow_assets.transforms.fields import (
    FieldTaskError,
    arithmetic_expr,
    map_all,
    merge_expr,
    truncate_expr,
)
from flow_assets.transforms.formatters import format_expr
from flow_assets.transforms.masking import mask_expr

STATUS = "_fb_status"
REASON = "_fb_reason"
# A rejected record also says which run rejected it and when.
REJECT_COLUMNS = {"_fb_run_id": pl.String(), "_fb_rejected_at": pl.Datetime("us", "UTC")}
FILTERED, DROPPED, REJECTED, FAILED = "filtered", "dropped", "rejected", "failed"

DTYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us", "UTC"),
}
POLARS_SAMPLES = re.compile(r"(values: )\[.*?\](?=$|\s)", re.MULTILINE)
NUMERIC_TEXT = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"

CHECKS: dict[str, Callable[[pl.Expr, pl.DataType], pl.Expr]] = {
    # True where the value passes; null passes every check but non_null.
    "non_null": lambda c, _: c.is_not_null(),
    "non_negative": lambda c, _: c >= 0,
    "non_zero": lambda c, _: c != 0,
    "numeric": lambda c, t: (
        pl.lit(True) if t.is_numeric() else c.cast(pl.String).str.contains(NUMERIC_TEXT)
    ),
}
ON_FAILURE_STATUS = {"quarantine": REJECTED, "drop": DROPPED, "fail": FAILED}


class TaskError(ValueError):
    """A task cannot be applied; names the flow file, the task and the field."""


@dataclass(frozen=True)
class Outcome:
    read: int
    loaded: int
    filtered: int
    dropped: int
    rejected: int
    failed: int

    @classmethod
    def from_counts(cls, counts: Mapping[str | None, int]) -> Outcome:
        def get(key: str | None) -> int:
            return int(counts.get(key, 0))

        return cls(
            read=sum(counts.values()),
            loaded=get(None),
            filtered=get(FILTERED),
            dropped=get(DROPPED),
            rejected=get(REJECTED),
            failed=get(FAILED),
        )

    def as_metadata(self) -> dict[str, int]:
        """read = loaded + filtered + rejected; dropped (by a validate task) counts as filtered."""
        return {
            "records_read": self.read,
            "records_loaded": self.loaded,
            "records_filtered": self.filtered + self.dropped,
            "records_rejected": self.rejected,
            "records_dropped_by_validation": self.dropped,
        }


@dataclass
class Tally:
    """Counts of annotated batches: per status, per (status, reason), and failing records."""

    statuses: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    failed_examples: list[str] = field(default_factory=list)

    def add(self, annotated: pl.DataFrame, key: str | None) -> None:
        removed = annotated.filter(pl.col(STATUS).is_not_null())
        self.statuses[None] += annotated.height - removed.height
        for status, reason, n in removed.group_by(STATUS, REASON).len().iter_rows():
            self.statuses[status] += n
            self.reasons[(status, reason)] += n
        failed = removed.filter(pl.col(STATUS) == FAILED).head(5 - len(self.failed_examples))
        for row in failed.iter_rows(named=True):
            record = row.get(key, "?") if key else "?"
            self.failed_examples.append(f"record {record}: {row[REASON]}")

    @property
    def outcome(self) -> Outcome:
        return Outcome.from_counts(self.statuses)


def rejection_stamp(run_id: str, at: datetime) -> list[pl.Expr]:
    """The REJECT_COLUMNS of records rejected by run `run_id` at `at`."""
    return [
        pl.lit(run_id, pl.String).alias("_fb_run_id"),
        pl.lit(at.astimezone(UTC), pl.Datetime("us", "UTC")).alias("_fb_rejected_at"),
    ]


def pushable_filters(flow: FlowSpec) -> list[FilterSpec]:
    """Filters at the head of the task list act on source fields, so the source may apply them."""
    leading = []
    for task in flow.tasks:
        if not isinstance(task, FilterTask):
            break
        leading.append(task.filter)
    return leading


def annotate(
    lf: pl.LazyFrame,
    flow: FlowSpec,
    salts: Mapping[int, str] | None = None,
    file: str = "",
    skip: Collection[int] = (),
) -> pl.LazyFrame:
    """Every task as expressions over lf, plus the STATUS and REASON columns. Tasks whose
    index is in `skip` were applied already (masks applied at the source)."""
    lf = lf.with_columns(
        pl.lit(None, pl.String).alias(STATUS), pl.lit(None, pl.String).alias(REASON)
    )
    for i, (task, spec) in enumerate(zip(flow.tasks, flow.task_specs, strict=True)):
        if i in skip:
            continue
        kind = task_kind(task)
        where = f"{file}: tasks[{i}].{kind}"
        schema = lf.collect_schema()
        try:
            lf = _apply(lf, task, spec, schema, where, (salts or {}).get(i))
            lf.collect_schema()  # resolves names and types now, so errors name this task
        except TaskError as exc:
            if str(exc).startswith(where):
                raise
            field = getattr(spec, "field", "")
            raise TaskError(f"{where}: field '{field}': {exc}") from None
        except FieldTaskError as exc:
            raise TaskError(f"{where}: field '{exc.field}': {exc}") from None
        except (pl.exceptions.PolarsError, ValueError, TypeError) as exc:
            field = getattr(spec, "field", "")
            raise TaskError(
                f"{where}: cannot be applied to field '{field}': {short_error(exc)}"
            ) from None
    return lf


def _apply(
    lf: pl.LazyFrame,
    task: BaseModel,
    spec: BaseModel,
    schema: pl.Schema,
    where: str,
    secret: str | None,
) -> pl.LazyFrame:
    """One task; `secret` is the resolved salt or key of a mask."""
    if isinstance(task, MapTask):
        return _map(lf, task.map, schema, where)
    if isinstance(spec, MapAllSpec):
        return map_all(lf, spec, schema)
    if isinstance(spec, FilterSpec):
        kept = filter_expr(spec, schema).fill_null(False)
        return _mark(lf, ~kept, FILTERED, f"{spec.field}: filter")
    if isinstance(spec, ComputeSpec):
        return lf.with_columns(pl.sql_expr(spec.expression).alias(spec.field))
    if isinstance(spec, ArithmeticSpec):
        return lf.with_columns(arithmetic_expr(spec, schema))
    if isinstance(spec, MergeSpec):
        return lf.with_columns(merge_expr(spec, schema))
    if isinstance(spec, TruncateSpec):
        return lf.with_columns(truncate_expr(spec, schema))
    if isinstance(spec, CastSpec):
        _need(schema, spec.field, where)
        return _cast_field(lf, spec.field, schema[spec.field], spec.type, spec.field)
    if isinstance(spec, FormatSpec):
        return _format(lf, spec, schema)
    if isinstance(spec, MaskSpec):
        return lf.with_columns(mask_expr(spec, secret))
    if isinstance(spec, ValidateSpec):
        _need(schema, spec.field, where)
        passed = CHECKS[spec.check](pl.col(spec.field), schema[spec.field])
        status = ON_FAILURE_STATUS[spec.on_failure]
        return _mark(lf, ~passed, status, f"{spec.field}: {spec.check}")
    raise TypeError(f"no implementation of task {type(task).__name__}")


def _mark(lf: pl.LazyFrame, failed: pl.Expr, status: str, reason: str) -> pl.LazyFrame:
    """Give rows that are still to be loaded and fail this step the status and reason."""
    hit = pl.col(STATUS).is_null() & failed.fill_null(False)
    return lf.with_columns(
        pl.when(hit).then(pl.lit(status)).otherwise(pl.col(STATUS)).alias(STATUS),
        pl.when(hit).then(pl.lit(reason)).otherwise(pl.col(REASON)).alias(REASON),
    )


def _need(schema: pl.Schema, field: str, where: str) -> None:
    if field not in schema:
        fields = [n for n in schema if n not in (STATUS, REASON)]
        raise TaskError(f"{where}: '{field}' is not a field here; fields: {', '.join(fields)}")


def _map(
    lf: pl.LazyFrame, mapping: dict[str, str | MapTarget], schema: pl.Schema, where: str
) -> pl.LazyFrame:
    renames: dict[str, str] = {}
    for old, target in mapping.items():
        _need(schema, old, f"{where}.{old}")
        new = target if isinstance(target, str) else (target.to or old)
        if new != old and new in schema and new not in mapping:
            raise TaskError(f"{where}.{old}: cannot rename to '{new}': that field exists already")
        renames[old] = new
        dtype = None if isinstance(target, str) else target.type
        if dtype:
            lf = _cast_field(lf, old, schema[old], dtype, new)
    return lf.rename(renames)


def _cast_field(
    lf: pl.LazyFrame, field: str, source: pl.DataType, dtype: str, label: str
) -> pl.LazyFrame:
    """Cast field to the flow file's type `dtype`; a value that does not cast is rejected
    (reason '<label>: not a valid <dtype>') rather than silently nulled."""
    cast = _cast(pl.col(field), source, DTYPES[dtype])
    failed = pl.col(field).is_not_null() & cast.is_null()
    lf = _mark(lf, failed, REJECTED, f"{label}: not a valid {dtype}")
    return lf.with_columns(cast.alias(field))


def _cast(col: pl.Expr, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    if source == pl.String() and target == pl.Datetime("us", "UTC"):
        return col.str.to_datetime(time_zone="UTC", strict=False).dt.cast_time_unit("us")
    if source == pl.String() and target == pl.Date():
        return col.str.to_date(strict=False)
    if source == pl.String() and target == pl.Boolean():
        lowered = col.str.to_lowercase().str.strip_chars()
        return (
            pl.when(lowered.is_in(["true", "1", "yes"]))
            .then(True)
            .when(lowered.is_in(["false", "0", "no"]))
            .then(False)
        )
    return col.cast(target, strict=False)


def _format(lf: pl.LazyFrame, spec: FormatSpec, schema: pl.Schema) -> pl.LazyFrame:
    target = spec.into or spec.field
    formatted = format_expr(spec, schema.get(spec.field))
    if spec.on_invalid == "quarantine":
        invalid = pl.col(spec.field).is_not_null() & formatted.is_null()
        lf = _mark(lf, invalid, REJECTED, f"{spec.field}: not a valid {spec.as_}")
    return lf.with_columns(formatted.alias(target))


def filter_expr(spec: FilterSpec, schema: pl.Schema) -> pl.Expr:
    """True where the record is kept; comparisons with null are never true."""
    col, op = pl.col(spec.field), spec.operator
    if spec.field not in schema:
        raise TaskError(f"'{spec.field}' is not a field here")
    dtype = schema[spec.field]

    def lit(value: Any) -> Any:
        return _coerce(value, dtype, spec.field)

    if op == "is_null":
        return col.is_null()
    if op == "is_not_null":
        return col.is_not_null()
    if op == "between":
        low, high = spec.value  # type: ignore[misc]
        # pl.lit: a bare string would be read as a column name
        return col.is_between(pl.lit(lit(low)), pl.lit(lit(high)))
    if op in ("in", "not_in"):
        listed = [lit(v) for v in spec.value]  # type: ignore[union-attr]
        # Numbers keep their own type, so 1.5 is simply not in an integer field.
        values = (
            pl.Series(listed, strict=False)
            if dtype.is_numeric()
            else pl.Series(listed, dtype=dtype)
        )
        return col.is_in(values) if op == "in" else col.is_not_null() & ~col.is_in(values)
    if op == "contains":
        return col.cast(pl.String).str.contains(str(spec.value), literal=True)
    value = pl.lit(lit(spec.value))
    return {
        "equal_to": col == value,
        "not_equal_to": col != value,
        "less_than": col < value,
        "less_than_or_equal_to": col <= value,
        "greater_than": col > value,
        "greater_than_or_equal_to": col >= value,
    }[op]


def _coerce(value: Any, dtype: pl.DataType, field: str) -> Any:
    """A flow file's literal as the field's type, so '2024-01-01' compares with a date."""
    try:
        if isinstance(dtype, pl.Datetime):
            parsed = value if isinstance(value, datetime) else _to_datetime(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if dtype == pl.Date():
            if isinstance(value, datetime):
                return value.date()
            return value if isinstance(value, date) else date.fromisoformat(str(value))
        if dtype.is_numeric():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("not a number")
        elif dtype == pl.Boolean():
            if not isinstance(value, bool):
                raise ValueError("not true or false")
        elif dtype == pl.String() or isinstance(dtype, pl.Categorical | pl.Enum):
            if not isinstance(value, str):
                raise ValueError(f"not text; quote it in the flow file: '{value}'")
        elif dtype != pl.Null():  # an all-null field compares with anything, matching nothing
            raise ValueError("filters compare text, numbers, booleans, dates and datetimes")
    except ValueError as exc:
        raise TaskError(
            f"value {value!r} cannot be compared with {field} ({dtype}): {exc}"
        ) from None
    return value


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def without_samples(text: str) -> str:
    """Polars names sample values in some errors ("... for 2 out of 9 values: ["a@b.com",
    ...]"); they may be records' raw values, so no message carries them on."""
    return POLARS_SAMPLES.sub(r"\1[...]", text)


def short_error(exc: Exception) -> str:
    """An error's first line, without sample values, at most 300 characters."""
    return without_samples(str(exc).strip().splitlines()[0])[:300]
