"""Paginators shared by source connectors: every API pages one of a few ways, and `paginate`
walks any of them. A connector supplies `fetch(state) -> answer` and one of the `next_*`
functions below (or its own) saying where the next page starts, or None at the end."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

S = TypeVar("S")  # where a page starts: a URL, a cursor, an offset, a page number
A = TypeVar("A")  # what a fetch answers

LINK = re.compile(r'<(?P<url>[^>]*)>\s*;[^,]*?\brel="?(?P<rel>[^",;]+)"?')


def paginate(fetch: Callable[[S], A], start: S, next_of: Callable[[S, A], S | None]) -> Iterator[A]:
    """Fetch pages from `start` (not None: a first cursor is "") until `next_of` says there
    are no more."""
    state: S | None = start
    while state is not None:
        answer = fetch(state)
        yield answer
        state = next_of(state, answer)


def next_in_body(*path: str) -> Callable[[Any, Mapping[str, Any]], Any]:
    """The next URL or cursor at `path` in a JSON body (next_page, paging.next.after,
    response_metadata.next_cursor, @odata.nextLink...); empty or missing ends the paging."""

    def next_of(_state: Any, body: Mapping[str, Any]) -> Any:
        value: Any = body
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value or None

    return next_of


def next_offset(limit: int, rows: Callable[[A], Sequence[Any]]) -> Callable[[int, A], int | None]:
    """Offset paging: a short page is the last."""
    return lambda offset, answer: offset + limit if len(rows(answer)) >= limit else None


def next_page_number(rows: Callable[[A], Sequence[Any]]) -> Callable[[int, A], int | None]:
    """Page-number paging: an empty page ends it."""
    return lambda number, answer: number + 1 if rows(answer) else None


def next_link(headers: Mapping[str, str]) -> str | None:
    """The rel="next" URL of an RFC 8288 Link header, if any."""
    for match in LINK.finditer(headers.get("Link") or headers.get("link") or ""):
        if match["rel"].strip().lower() == "next":
            return match["url"]
    return None
