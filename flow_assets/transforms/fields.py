"""AppFlow's field tasks as Polars expressions: map_all, arithmetic, merge, truncate."""

from __future__ import annotations

import polars as pl

from flow_assets.spec.models import ArithmeticSpec, MapAllSpec, MergeSpec, TruncateSpec


class FieldTaskError(ValueError):
    """A task names a field it cannot use; the caller adds the flow file and the task."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def map_all(lf: pl.LazyFrame, spec: MapAllSpec, schema: pl.Schema) -> pl.LazyFrame:
    """Every field passes through but the excluded ones, which are removed."""
    for name in spec.exclude:
        if name not in schema:
            raise FieldTaskError(name, f"cannot exclude '{name}': it is not a field here")
    return lf.drop(spec.exclude)


def arithmetic_expr(spec: ArithmeticSpec, schema: pl.Schema) -> pl.Expr:
    """A op B; null in gives null out, and so does division by zero (not inf or NaN)."""
    a, b = (_operand(o, schema) for o in spec.operands)
    if spec.operator == "add":
        result = a + b
    elif spec.operator == "subtract":
        result = a - b
    elif spec.operator == "multiply":
        result = a * b
    else:
        result = pl.when(b != 0).then(a / b)
    return result.alias(spec.field)


def _operand(operand: str | int | float, schema: pl.Schema) -> pl.Expr:
    if not isinstance(operand, str):
        return pl.lit(operand)
    if operand not in schema:
        raise FieldTaskError(operand, f"'{operand}' is not a field here")
    dtype = schema[operand]
    if not (dtype.is_numeric() or dtype == pl.Null()):
        raise FieldTaskError(
            operand,
            f"'{operand}' is {dtype}, not a number; cast it first "
            f"(cast: {{field: {operand}, type: float}})",
        )
    return pl.col(operand)


def merge_expr(spec: MergeSpec, schema: pl.Schema) -> pl.Expr:
    """The format with each {Field} replaced by its value as text; a null value is ''."""
    pieces: list[pl.Expr] = []
    for text, name in spec.parts:
        if text:
            pieces.append(pl.lit(text))
        if name is not None:
            if name not in schema:
                raise FieldTaskError(name, f"'{{{name}}}' in format is not a field here")
            pieces.append(pl.col(name).cast(pl.String).fill_null(""))
    return pl.concat_str(pieces).alias(spec.field)


def truncate_expr(spec: TruncateSpec, schema: pl.Schema) -> pl.Expr:
    """The first `length` characters (not bytes) of a string field; null stays null."""
    if spec.field not in schema:
        raise FieldTaskError(spec.field, f"'{spec.field}' is not a field here")
    dtype = schema[spec.field]
    if dtype not in (pl.String(), pl.Null()):
        raise FieldTaskError(
            spec.field,
            f"truncate works on text, and '{spec.field}' is {dtype}; "
            f"cast it first (cast: {{field: {spec.field}, type: string}})",
        )
    return pl.col(spec.field).cast(pl.String).str.head(spec.length)
