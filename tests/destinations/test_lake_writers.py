"""Runs writing one lake table at once (partitions backfilled in parallel) lose nothing."""

import threading

import polars as pl

from flow_assets.destinations.lake import Lake


def test_parallel_upserts_keep_every_record(tmp_path):
    lake = Lake(tmp_path / "lake")
    writers, start = 8, threading.Barrier(8)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        frame = pl.LazyFrame({"Id": [f"{n}-{i}" for i in range(100)], "day": [n] * 100})
        start.wait()  # all at once, as parallel partition runs end together
        try:
            lake.write("opportunities", frame, "upsert", ["Id"])
        except BaseException as exc:  # noqa: BLE001 - reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    table = lake.scan("opportunities").collect()
    assert table.height == writers * 100 and table["Id"].is_unique().all()
    with lake.connect(read_only=True) as con:  # the DuckDB view names the same version
        assert con.execute("SELECT count(*) FROM opportunities").fetchone() == (writers * 100,)
