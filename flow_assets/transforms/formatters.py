"""Formatters for common messy fields (phone numbers, emails, dates), as vectorised Polars
expressions.

A value that cannot be formatted becomes null; the caller counts those so none vanish unseen.
"""

from __future__ import annotations

import polars as pl

from flow_assets.spec.models import FormatSpec

# A pragmatic address check: something@domain.tld, no spaces; full RFC 5322 is not the goal.
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def format_expr(spec: FormatSpec, dtype: pl.DataType | None = None) -> pl.Expr:
    """The formatted value of spec.field, whose type (dtype) is given when known."""
    if spec.as_ == "date" and (dtype == pl.Date() or isinstance(dtype, pl.Datetime)):
        return pl.col(spec.field).cast(pl.Date)  # a date (or datetime) already: no text to parse
    text = pl.col(spec.field).cast(pl.String).str.strip_chars()
    if spec.as_ == "date":
        return parse_date(text, spec.formats or [])
    if spec.as_ == "phone_e164":
        return phone_e164(text, spec.country_code)
    if spec.as_ == "email":
        lowered = text.str.to_lowercase()
        return pl.when(lowered.str.contains(EMAIL)).then(lowered)
    if spec.as_ == "trim":
        return text
    if spec.as_ == "lower":
        return text.str.to_lowercase()
    if spec.as_ == "upper":
        return text.str.to_uppercase()
    raise ValueError(f"unknown format '{spec.as_}'")


def parse_date(text: pl.Expr, formats: list[str]) -> pl.Expr:
    """The first format that parses the whole text wins; text no format parses is null."""
    return pl.coalesce([text.str.to_date(fmt, strict=False, exact=True) for fmt in formats])


def phone_e164(text: pl.Expr, country_code: str) -> pl.Expr:
    """'(415) 555-0123' -> '+14155550123'; international '+44 20 7946 0958' kept as given.

    National numbers take the country code; the national length is 10 digits for NANP (1) and
    otherwise between 6 and 14 - a formatter, not a numbering plan database.
    """
    digits = text.str.replace_all(r"\D", "")
    n = digits.str.len_chars()
    international = text.str.starts_with("+") | text.str.starts_with("00")
    intl_digits = pl.when(text.str.starts_with("00")).then(digits.str.slice(2)).otherwise(digits)
    national_ok = (n == 10) if country_code == "1" else n.is_between(6, 14)
    return (
        pl.when(international & intl_digits.str.len_chars().is_between(8, 15))
        .then(pl.lit("+") + intl_digits)
        .when(~international & national_ok)
        .then(pl.lit("+" + country_code) + digits)
        .when(~international & (n == 10 + len(country_code)) & digits.str.starts_with(country_code))
        .then(pl.lit("+") + digits)
    )
