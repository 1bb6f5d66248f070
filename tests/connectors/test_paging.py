"""The shared paginators, on hand-made pages."""

from flow_assets.connectors.paging import (
    next_in_body,
    next_link,
    next_offset,
    next_page_number,
    paginate,
)


def test_next_url_or_cursor_in_the_body():
    pages = {"": {"rows": [1, 2], "meta": {"next": "c1"}}, "c1": {"rows": [3], "meta": {}}}
    got = list(paginate(pages.__getitem__, "", next_in_body("meta", "next")))
    assert got == [pages[""], pages["c1"]]
    assert next_in_body("a", "b")(None, {"a": {"b": ""}}) is None  # empty ends it too


def test_offsets_stop_at_a_short_page():
    rows = list(range(7))
    got = list(paginate(lambda o: rows[o : o + 3], 0, next_offset(3, lambda page: page)))
    assert got == [[0, 1, 2], [3, 4, 5], [6]]
    exact = list(range(6))  # a full last page costs one empty fetch, no more
    assert list(paginate(lambda o: exact[o : o + 3], 0, next_offset(3, lambda p: p)))[-1] == []


def test_page_numbers_stop_at_an_empty_page():
    data = {1: ["a"], 2: ["b"], 3: []}
    assert list(paginate(data.__getitem__, 1, next_page_number(lambda p: p))) == [["a"], ["b"], []]


def test_link_header():
    header = (
        '<https://api.example.com/items?page=1>; rel="prev", '
        '<https://api.example.com/items?page=3>; rel="next"'
    )
    assert next_link({"Link": header}) == "https://api.example.com/items?page=3"
    assert next_link({"Link": '<https://x/1>; rel="prev"'}) is None
    assert next_link({}) is None
