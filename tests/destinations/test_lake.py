"""The local lake: append, overwrite and upsert by key, with DuckDB and Parquet always agreeing."""

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from flow_assets.destinations.lake import Lake


def table(lake: Lake, name: str) -> pl.DataFrame:
    with lake.connect(read_only=True) as con:
        in_duckdb = con.sql(f'SELECT * FROM "{name}"').pl().sort("Id")
    in_parquet = lake.scan(name).collect().sort("Id")
    assert_frame_equal(in_duckdb, in_parquet)
    return in_parquet


def test_append_overwrite_upsert(tmp_path):
    lake = Lake(tmp_path)
    lake.write("t", pl.LazyFrame({"Id": ["a", "b"], "v": [1, 2]}), "append")
    lake.write("t", pl.LazyFrame({"Id": ["c"], "v": [3]}), "append")
    assert table(lake, "t")["Id"].to_list() == ["a", "b", "c"]

    result = lake.write(
        "t", pl.LazyFrame({"Id": ["b", "d", "d"], "v": [20, 4, 40]}), "upsert", ["Id"]
    )
    assert (result.rows_written, result.rows_in_table) == (2, 4)
    assert table(lake, "t").to_dicts() == [
        {"Id": "a", "v": 1}, {"Id": "b", "v": 20}, {"Id": "c", "v": 3}, {"Id": "d", "v": 40}]  # fmt: skip

    lake.write("t", pl.LazyFrame({"Id": ["z"], "v": [9]}), "overwrite")
    assert table(lake, "t")["Id"].to_list() == ["z"]
    assert len(lake.files("t")) == 1
    assert len(list(lake.table_dir("t").glob("v-*"))) == 1  # old versions are gone


def test_upsert_twice_changes_nothing(tmp_path):
    lake = Lake(tmp_path)
    batch = pl.LazyFrame({"Id": ["a", "b"], "v": [1.5, None]})
    lake.write("t", batch, "upsert", ["Id"])
    first = table(lake, "t")
    lake.write("t", batch, "upsert", ["Id"])
    assert_frame_equal(table(lake, "t"), first)


def test_new_columns_are_added_and_type_changes_refused(tmp_path):
    lake = Lake(tmp_path)
    lake.write("t", pl.LazyFrame({"Id": ["a"], "v": [1]}), "append")
    lake.write("t", pl.LazyFrame({"Id": ["b"], "v": [2], "w": ["x"]}), "append")
    assert table(lake, "t")["w"].to_list() == [None, "x"]
    with pytest.raises(TypeError, match="column 'v' is Int64 but the new records have String"):
        lake.write("t", pl.LazyFrame({"Id": ["c"], "v": ["three"]}), "append")
    assert table(lake, "t").height == 2  # the failed write left nothing behind


def test_append_adds_a_file_and_shares_the_old_ones(tmp_path):
    lake = Lake(tmp_path)
    lake.write("t", pl.LazyFrame({"Id": ["a"], "v": [1]}), "append")
    first = lake.files("t")[0]
    inode = first.stat().st_ino
    lake.write("t", pl.LazyFrame({"Id": ["b"], "v": [2]}), "append")
    files = {f.name: f for f in lake.files("t")}
    assert len(files) == 2
    assert files[first.name].stat().st_ino == inode  # shared by a hard link, not rewritten
    assert table(lake, "t")["Id"].to_list() == ["a", "b"]


def test_a_failed_write_leaves_the_table_as_it_was(tmp_path):
    lake = Lake(tmp_path)
    lake.write("t", pl.LazyFrame({"Id": ["a"], "v": [1]}), "append")
    bad = pl.LazyFrame({"Id": ["b"]}).with_columns(v=pl.col("Id").cast(pl.Int64, strict=True))
    with pytest.raises(pl.exceptions.InvalidOperationError):
        lake.write("t", bad, "append")
    assert table(lake, "t")["Id"].to_list() == ["a"]
    assert len(list(lake.table_dir("t").glob("v-*"))) == 1


def test_an_empty_batch_leaves_the_current_version(tmp_path):
    lake = Lake(tmp_path)
    first = lake.write("t", pl.LazyFrame({"Id": ["a"], "v": [1]}), "upsert", ["Id"])
    again = lake.write("t", pl.LazyFrame(schema={"Id": pl.String, "v": pl.Int64}), "upsert", ["Id"])
    assert again.version == first.version and again.rows_written == 0
    assert table(lake, "t")["Id"].to_list() == ["a"]
