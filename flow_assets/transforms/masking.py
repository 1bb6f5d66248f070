"""Masking as Polars expressions: all, first N, last N characters, or a salted SHA-256 digest."""

from __future__ import annotations

import polars as pl
import polars_hash  # noqa: F401  (registers the .chash namespace)

from flow_assets.spec.models import MaskSpec

_ANY_CHAR = r"(?s)."


def mask_expr(spec: MaskSpec, salt: str | None = None) -> pl.Expr:
    """The masked value of spec.field; nulls stay null, so 'missing' is still visible."""
    return _masked(spec, salt).alias(spec.field)


def _masked(spec: MaskSpec, salt: str | None) -> pl.Expr:
    text = pl.col(spec.field).cast(pl.String)
    if spec.how == "all":
        return text.str.replace_all(_ANY_CHAR, spec.char)
    if spec.how == "first_n":
        head = text.str.head(spec.n).str.replace_all(_ANY_CHAR, spec.char)
        return pl.concat_str([head, text.str.tail(-spec.n)])
    if spec.how == "last_n":
        tail = text.str.tail(spec.n).str.replace_all(_ANY_CHAR, spec.char)
        return pl.concat_str([text.str.head(-spec.n), tail])
    if spec.how == "sha256":
        salted = pl.concat_str([pl.lit(salt), text]) if salt else text
        return salted.chash.sha2_256()
    raise ValueError(f"unknown mask '{spec.how}'")
