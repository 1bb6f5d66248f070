"""Parser for the SOQL subset the sandbox answers, compiled to vectorised Polars expressions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

TEXT_TYPES = frozenset({"string", "picklist", "email", "phone", "textarea", "url", "combobox"})
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int"})
MAX_OFFSET = 2000  # documented SOQL limit; larger offsets are NUMBER_OUTSIDE_VALID_RANGE

# Type names as Salesforce words them in "must be of type X" errors.
_TYPE_WORD = {"int": "int", "boolean": "boolean", "date": "date", "datetime": "dateTime"}
_TYPE_WORD |= {t: "double" for t in ("currency", "double", "percent")}
_TYPE_WORD |= {t: "string" for t in TEXT_TYPES} | {t: "id" for t in ID_TYPES}

# Valid SOQL this sandbox does not implement: say so instead of a bare "unexpected token".
_UNSUPPORTED = frozenset(
    {"GROUP", "HAVING", "WITH", "FOR", "USING", "TYPEOF", "INCLUDES", "EXCLUDES", "FIELDS"}
    | {"SUM", "AVG", "MIN", "MAX", "COUNT_DISTINCT", "CALENDAR_YEAR", "FORMAT", "TOLABEL"}
)
_KEYWORDS = frozenset(
    {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC"}
    | {"DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE"}
)

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
    |(?P<number>[+-]?(?:\d+(?:\.\d+)?|\.\d+)(?![\w.:]))
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<punct>[(),])
    |(?P<quote>')
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'"}
_ESCAPES |= {"\\": "\\"} | {k.upper(): v for k, v in _ESCAPES.items() if k.isalpha()}
_RUST_REGEX_META = frozenset("\\.+*?()|[]{}^$#&-~")


class SoqlError(Exception):
    """A query Salesforce would reject; `error_code` is the REST errorCode."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class _Tok:
    kind: str  # ident, string, number, date, datetime, op, punct, eof
    text: str
    pos: int
    value: Any = None  # decoded literal; for strings a (text, like_regex) pair

    def kw(self) -> str:
        return self.text.upper() if self.kind == "ident" else ""


@dataclass
class Query:
    """A compiled query: fields in SELECT order, a filter and sort keys over the frame."""

    sobject: str
    fields: list[str]
    is_count: bool = False
    where: pl.Expr | None = None
    # (sort key, descending, nulls last) per ORDER BY item
    order_by: list[tuple[pl.Expr, bool, bool]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    # The text as tokens joined by one space, identifiers and keywords upper-cased (SOQL
    # ignores their case), literals verbatim: equal for texts that answer the same rows.
    normalized: str = ""


def _rx(ch: str) -> str:
    return "\\" + ch if ch in _RUST_REGEX_META else ch


def _read_string(text: str, start: int) -> tuple[tuple[str, str], int]:
    """Decode the quoted literal opening at `start`; also build its LIKE pattern, where
    escaped % and _ are literal and bare ones are wildcards."""
    plain, pattern, i = [], [], start + 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            return ("".join(plain), "".join(pattern)), i + 1
        if ch == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt in _ESCAPES:
                plain.append(_ESCAPES[nxt])
                pattern.append(_rx(_ESCAPES[nxt]))
                i += 2
            elif nxt in ("%", "_"):
                plain.append(nxt)
                pattern.append(_rx(nxt))
                i += 2
            elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", text[i + 2 : i + 6]):
                decoded = chr(int(text[i + 2 : i + 6], 16))
                plain.append(decoded)
                pattern.append(_rx(decoded))
                i += 6
            else:
                raise _positioned(
                    text,
                    i,
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{text[start + 1 : i + 2]}'. "
                    f"Illegal character sequence '\\{nxt}' in string literal.",
                )
            continue
        plain.append(ch)
        pattern.append(".*" if ch == "%" else "." if ch == "_" else _rx(ch))
        i += 1
    raise _positioned(text, start, "MALFORMED_QUERY", "unterminated string literal")


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _positioned(text, pos, "MALFORMED_QUERY", f"unexpected token: '{text[pos]}'")
        kind = m.lastgroup or ""
        if kind == "quote":
            value, end = _read_string(text, pos)
            toks.append(_Tok("string", text[pos:end], pos, value))
            pos = end
            continue
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    toks.append(_Tok("eof", "<EOF>", len(text)))
    return toks


def _positioned(text: str, pos: int, code: str, message: str) -> SoqlError:
    """Salesforce's error layout: the query line, a caret, then row and column."""
    row = text.count("\n", 0, pos) + 1
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : None if line_end < 0 else line_end]
    col = pos - line_start + 1
    return SoqlError(
        code, f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n{message}"
    )


def _parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class _Parser:
    def __init__(self, text: str, schemas: Mapping[str, Mapping[str, str]]) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.objects = {name.lower(): name for name in schemas}
        self.schemas = schemas
        self.sobject = ""
        self.fields: dict[str, str] = {}  # lower-case name -> canonical name

    # -- token helpers ------------------------------------------------------------

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def advance(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "eof":  # stay on EOF so errors can always point at it
            self.i += 1
        return tok

    def error(self, tok: _Tok, code: str, message: str) -> SoqlError:
        return _positioned(self.text, tok.pos, code, message)

    def unexpected(self, tok: _Tok | None = None) -> SoqlError:
        tok = tok or self.tok
        shown = tok.text if tok.kind == "eof" else f"'{tok.text}'"
        note = " (not supported by the Flowbridge sandbox)" if tok.kw() in _UNSUPPORTED else ""
        return self.error(tok, "MALFORMED_QUERY", f"unexpected token: {shown}{note}")

    def accept(self, keyword: str) -> bool:
        if self.tok.kw() == keyword:
            self.advance()
            return True
        return False

    def expect(self, keyword: str) -> None:
        if not self.accept(keyword):
            raise self.unexpected()

    def expect_punct(self, ch: str) -> None:
        if self.tok.kind != "punct" or self.tok.text != ch:
            raise self.unexpected()
        self.advance()

    def integer(self) -> int:
        tok = self.advance()
        if tok.kind != "number" or not tok.text.isdigit():
            raise self.unexpected(tok)
        return int(tok.text)

    # -- grammar ------------------------------------------------------------------

    def parse(self) -> Query:
        self.expect("SELECT")
        raw_fields, is_count = self.select_list()
        self.expect("FROM")
        obj = self.advance()
        if obj.kind != "ident" or obj.kw() in _KEYWORDS:
            raise self.unexpected(obj)
        self.sobject = self.objects.get(obj.text.lower(), "")
        if not self.sobject:
            raise self.error(
                obj,
                "INVALID_TYPE",
                f"sObject type '{obj.text}' is not supported. If you are attempting to use "
                "a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        self.fields = {name.lower(): name for name in self.schemas[self.sobject]}
        query = Query(self.sobject, self.resolve_select(raw_fields), is_count)
        if self.accept("WHERE"):
            query.where = self.condition()
        if self.accept("ORDER"):
            self.expect("BY")
            query.order_by = self.order_list()
        if self.accept("LIMIT"):
            query.limit = self.integer()
        if self.tok.kw() == "OFFSET":
            tok = self.advance()
            query.offset = self.integer()
            if query.offset > MAX_OFFSET:
                raise self.error(
                    tok,
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"Maximum SOQL offset allowed is {MAX_OFFSET}",
                )
        if self.tok.kind != "eof":
            raise self.unexpected()
        return query

    def select_list(self) -> tuple[list[_Tok], bool]:
        if self.tok.kw() == "COUNT" and self.toks[self.i + 1].text == "(":
            count = self.advance()
            self.advance()
            if self.tok.text != ")":
                # COUNT(field) is an aggregate query answering AggregateResult rows.
                raise self.error(
                    count,
                    "MALFORMED_QUERY",
                    "aggregate functions are not supported by the Flowbridge sandbox",
                )
            self.advance()
            return [], True
        fields = []
        while True:
            tok = self.advance()
            if tok.kind != "ident" or tok.kw() in _KEYWORDS:
                raise self.unexpected(tok)
            if self.tok.text == "(":
                raise self.unexpected(tok if tok.kw() in _UNSUPPORTED else self.tok)
            fields.append(tok)
            if self.tok.text != ",":
                return fields, False
            self.advance()

    def field_name(self, tok: _Tok) -> str:
        if "." in tok.text:
            raise self.error(
                tok,
                "MALFORMED_QUERY",
                f"relationship field '{tok.text}' is not supported by the Flowbridge sandbox",
            )
        name = self.fields.get(tok.text.lower())
        if name is None:
            raise self.error(
                tok,
                "INVALID_FIELD",
                f"No such column '{tok.text}' on entity '{self.sobject}'. If you are "
                "attempting to use a custom field, be sure to append the '__c' after the "
                "custom field name. Please reference your WSDL or the describe call for the "
                "appropriate names.",
            )
        return name

    def resolve_select(self, toks: list[_Tok]) -> list[str]:
        names: list[str] = []
        for tok in toks:
            name = self.field_name(tok)
            if name in names:
                raise self.error(tok, "MALFORMED_QUERY", f"duplicate field selected: {name}")
            names.append(name)
        return names

    def condition(self) -> pl.Expr:
        expr = self.term()
        joiner = ""
        while self.tok.kw() in ("AND", "OR"):
            # SOQL demands parentheses whenever AND and OR are mixed.
            if joiner and self.tok.kw() != joiner:
                raise self.unexpected()
            joiner = self.advance().kw()
            right = self.term()
            expr = expr & right if joiner == "AND" else expr | right
        return expr

    def term(self) -> pl.Expr:
        if self.accept("NOT"):
            return ~self.term()
        if self.tok.text == "(":
            self.advance()
            expr = self.condition()
            self.expect_punct(")")
            return expr
        return self.comparison()

    def comparison(self) -> pl.Expr:
        tok = self.advance()
        if tok.kind != "ident" or tok.kw() in _KEYWORDS:
            raise self.unexpected(tok)
        name = self.field_name(tok)
        sf_type = self.schemas[self.sobject][name]
        op = self.advance()
        if op.kind == "op":
            value = self.literal(name, sf_type)
            return _compare(name, sf_type, op.text, value, self, op)
        if op.kw() == "LIKE":
            lit = self.advance()
            if lit.kind != "string":
                raise self.unexpected(lit)
            if sf_type not in TEXT_TYPES:
                raise self.error(
                    op,
                    "INVALID_FIELD",
                    f"invalid operator on field '{name}': LIKE applies to text fields only",
                )
            pattern = "(?si)^" + lit.value[1] + "$"
            return pl.col(name).str.contains(pattern).fill_null(False)
        negate = op.kw() == "NOT"
        if negate:
            op = self.advance()
        if op.kw() != "IN":
            raise self.unexpected(op)
        self.expect_punct("(")
        values = [self.literal(name, sf_type)]
        while self.tok.text == ",":
            self.advance()
            values.append(self.literal(name, sf_type))
        self.expect_punct(")")
        expr = _is_in(name, sf_type, values, self, op)
        return ~expr if negate else expr

    def literal(self, name: str, sf_type: str) -> Any:
        tok = self.advance()
        kind = _literal_kind(tok)
        if tok.kw() == "NULL":
            return None
        if kind in _accepted_kinds(sf_type):
            return _decode(tok)
        if tok.kind in ("op", "punct", "eof") or kind == "ident" and tok.kw() in _KEYWORDS:
            raise self.unexpected(tok)
        if kind == "ident":  # date literals such as TODAY or NEXT_WEEK
            raise self.error(
                tok,
                "MALFORMED_QUERY",
                f"unexpected token: '{tok.text}' (date literals are not supported by the "
                "Flowbridge sandbox)",
            )
        word = _TYPE_WORD[sf_type]
        quoted = "" if word in ("string", "id") else "not "
        raise self.error(
            tok,
            "INVALID_FIELD",
            f"value of filter criterion for field '{name}' must be of type {word} and "
            f"should {quoted}be enclosed in quotes",
        )

    def order_list(self) -> list[tuple[pl.Expr, bool, bool]]:
        keys = []
        while True:
            tok = self.advance()
            if tok.kind != "ident" or tok.kw() in _KEYWORDS:
                raise self.unexpected(tok)
            name = self.field_name(tok)
            expr = pl.col(name)
            if self.schemas[self.sobject][name] in TEXT_TYPES:
                expr = expr.str.to_uppercase()  # SOQL sorts text case-insensitively
            desc = False
            if self.accept("DESC"):
                desc = True
            else:
                self.accept("ASC")
            nulls_last = False  # SOQL puts nulls first unless told otherwise
            if self.accept("NULLS"):
                if self.accept("LAST"):
                    nulls_last = True
                else:
                    self.expect("FIRST")
            keys.append((expr, desc, nulls_last))
            if self.tok.text != ",":
                return keys
            self.advance()


def _literal_kind(tok: _Tok) -> str:
    if tok.kind == "ident" and tok.kw() in ("TRUE", "FALSE"):
        return "boolean"
    return tok.kind


def _decode(tok: _Tok) -> Any:
    if tok.kind == "string":
        return tok.value[0]
    if tok.kind == "number":
        return float(tok.text) if "." in tok.text else int(tok.text)
    if tok.kind == "date":
        return date.fromisoformat(tok.text)
    if tok.kind == "datetime":
        return _parse_datetime(tok.text)
    return tok.kw() == "TRUE"


def _accepted_kinds(sf_type: str) -> set[str]:
    if sf_type in TEXT_TYPES or sf_type in ID_TYPES:
        return {"string"}
    if sf_type in NUMBER_TYPES:
        return {"number"}
    return {sf_type}  # boolean, date, datetime


def _check_id(value: str, parser: _Parser, tok: _Tok) -> None:
    if len(value) not in (15, 18) or not value.isalnum():
        raise parser.error(tok, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {value}")


def _typed(value: Any, sf_type: str) -> pl.Expr:
    if sf_type == "datetime":
        return pl.lit(value, dtype=pl.Datetime("ms", "UTC"))
    if sf_type == "date":
        return pl.lit(value, dtype=pl.Date)
    return pl.lit(value)


def _compare(name: str, sf_type: str, op: str, value: Any, parser: _Parser, tok: _Tok) -> pl.Expr:
    col = pl.col(name)
    equality = op in ("=", "!=", "<>")
    if value is None:
        # SOQL has no unknown truth value: `= null` tests for null, `!= null` for a value.
        if op == "=":
            return col.is_null()
        return col.is_not_null() if equality else pl.lit(False)
    if sf_type == "boolean" and not equality:
        raise parser.error(
            tok, "INVALID_QUERY_FILTER_OPERATOR", f"invalid operator on boolean field: {op}"
        )
    rhs = _typed(value, sf_type)
    if sf_type in TEXT_TYPES:
        # Text comparisons are case-insensitive; ranges follow the upper-case sort order.
        if equality:
            col, rhs = col.str.to_lowercase(), pl.lit(value.lower())
        else:
            col, rhs = col.str.to_uppercase(), pl.lit(value.upper())
    elif sf_type in ID_TYPES:
        _check_id(value, parser, tok)
        if len(value) == 15:  # 15-character Ids are the case-sensitive prefix
            col = col.str.slice(0, 15)
        elif equality:
            col, rhs = col.str.to_lowercase(), pl.lit(value.lower())
    result = {
        "=": col == rhs,
        "!=": col != rhs,
        "<>": col != rhs,
        "<": col < rhs,
        "<=": col <= rhs,
        ">": col > rhs,
        ">=": col >= rhs,
    }[op]
    # A null field is "not equal" to any value and fails every other comparison.
    return result.fill_null(op in ("!=", "<>"))


def _is_in(name: str, sf_type: str, values: list[Any], parser: _Parser, tok: _Tok) -> pl.Expr:
    col = pl.col(name)
    present = [v for v in values if v is not None]
    expr = col.is_null() if len(present) < len(values) else pl.lit(False)
    if not present:
        return expr
    if sf_type in TEXT_TYPES:
        return expr | col.str.to_lowercase().is_in([v.lower() for v in present]).fill_null(False)
    if sf_type in ID_TYPES:
        for v in present:
            _check_id(v, parser, tok)
        long_ids = [v.lower() for v in present if len(v) == 18]
        short_ids = [v for v in present if len(v) == 15]
        if long_ids:
            expr = expr | col.str.to_lowercase().is_in(long_ids).fill_null(False)
        if short_ids:
            expr = expr | col.str.slice(0, 15).is_in(short_ids).fill_null(False)
        return expr
    if sf_type in NUMBER_TYPES:
        series = pl.Series([float(v) for v in present], dtype=pl.Float64)
        return expr | col.cast(pl.Float64).is_in(series).fill_null(False)
    dtype = {"datetime": pl.Datetime("ms", "UTC"), "date": pl.Date, "boolean": pl.Boolean}
    series = pl.Series(present, dtype=dtype[sf_type])
    return expr | col.is_in(series).fill_null(False)


def compile_soql(text: str, schemas: Mapping[str, Mapping[str, str]]) -> Query:
    """Parse `text` against `schemas` ({object: {field: Salesforce type}}).

    Object and field names match case-insensitively and come back canonical.
    Raises SoqlError with Salesforce's errorCode and message layout.
    """
    parser = _Parser(text, schemas)
    query = parser.parse()
    query.normalized = " ".join(
        tok.text.upper() if tok.kind == "ident" else tok.text for tok in parser.toks[:-1]
    )
    return query


def select_rows(query: Query, frame: pl.DataFrame, *, include_deleted: bool) -> pl.Series | None:
    """Row positions answering `query`, in answer order; None means every row, in order."""
    filters = []
    if not include_deleted and "IsDeleted" in frame.columns and frame["IsDeleted"].any():
        filters.append(~pl.col("IsDeleted"))
    if query.where is not None:
        filters.append(query.where)
    if not filters and not query.order_by and query.limit is None and not query.offset:
        return None
    lf = frame.lazy().with_row_index("__row")
    for f in filters:
        lf = lf.filter(f)
    if query.order_by:
        lf = lf.sort(
            [expr for expr, _, _ in query.order_by],
            descending=[desc for _, desc, _ in query.order_by],
            nulls_last=[last for _, _, last in query.order_by],
            maintain_order=True,  # ties keep row order, so paging is repeatable
        )
    if query.offset or query.limit is not None:
        lf = lf.slice(query.offset, query.limit)
    return lf.select("__row").collect().to_series()
