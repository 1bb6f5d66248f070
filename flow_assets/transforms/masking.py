"""Masking as Polars expressions: all, first N, last N characters, a salted SHA-256 digest, or
a keyed HMAC-SHA256 token."""

from __future__ import annotations

import polars as pl
import polars_hash  # noqa: F401  (registers the .chash namespace)

from flow_assets.spec.models import MaskSpec

_ANY_CHAR = r"(?s)."


def mask_expr(spec: MaskSpec, secret: str | None = None) -> pl.Expr:
    """The masked value of spec.field; nulls stay null, so 'missing' is still visible.
    `secret` is the resolved value of the mask's salt (sha256) or key (hmac)."""
    return _masked(spec, secret).alias(spec.field)


def _masked(spec: MaskSpec, secret: str | None) -> pl.Expr:
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
        salted = pl.concat_str([pl.lit(secret), text]) if secret else text
        return salted.chash.sha2_256()
    if spec.how == "hmac":
        # Deterministic per key, so masked keys still join across flows that share the key;
        # equal to Python's hmac.new(key, value, sha256).hexdigest() on UTF-8 text.
        if not secret:
            raise ValueError("mask 'hmac' needs the value of its key; set its ${ENV_VAR}")
        return text.chash.hmac_sha256(key=secret)
    raise ValueError(f"unknown mask '{spec.how}'")
