"""dlt fed Arrow tables: pages parsed by Polars, transformed as expressions, yielded as Arrow."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import dlt
import polars as pl
import polars_hash  # noqa: F401  (registers the .chash namespace: Polars has no SHA-256)
import pyarrow as pa
import requests

from bench import dlt_common
from bench.common import (
    CHECKED,
    DATETIME_FORMAT,
    EXCLUDED_STAGE,
    MASKED,
    PAGE_HEADERS,
    QUERY_PATH,
    SOQL,
    Result,
    Sandbox,
)

WIRE = pl.Schema(
    {
        "Id": pl.String(),
        "Name": pl.String(),
        "Amount": pl.Float64(),
        "StageName": pl.String(),
        "CloseDate": pl.String(),
        "Email__c": pl.String(),
        "Phone__c": pl.String(),
        "SystemModstamp": pl.String(),
    }
)
# Only the keys read are in the schema; the per-record `attributes` object is skipped.
ENVELOPE = {"nextRecordsUrl": pl.String, "records": pl.List(pl.Struct(WIRE))}


def transform(page: pl.DataFrame) -> pl.DataFrame:
    """Typed dates, the hashed email, the filter, and negative amounts dropped (no quarantine)."""
    amount = pl.col(CHECKED)
    return page.with_columns(
        pl.col("CloseDate").str.to_date("%Y-%m-%d"),
        pl.col("SystemModstamp")
        .str.to_datetime(DATETIME_FORMAT, time_zone="UTC")
        .dt.cast_time_unit("us"),
        pl.col(MASKED).chash.sha2_256(),
    ).filter((pl.col("StageName") != EXCLUDED_STAGE) & (amount.is_null() | (amount >= 0)))


class Reader:
    """Pages through the query with requests, one Polars frame per page."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.read = 0

    def pages(self) -> Iterator[pl.DataFrame]:
        token, base = self.sandbox.token()
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {token}", **PAGE_HEADERS})
        url: str | None = base + QUERY_PATH
        params: dict[str, str] | None = {"q": SOQL}
        while url:
            answer = session.get(url, params=params, timeout=120)
            answer.raise_for_status()
            envelope = pl.read_json(io.BytesIO(answer.content), schema=ENVELOPE)
            page = envelope["records"][0].struct.unnest()
            self.read += page.height
            yield page
            next_url = envelope["nextRecordsUrl"][0]
            url, params = (base + next_url if next_url else None), None


def resource(reader: Reader) -> dlt.sources.DltResource:
    @dlt.resource(
        name=dlt_common.TABLE, write_disposition="append", columns=dlt_common.COLUMN_HINTS
    )
    def opportunities() -> Iterator[pa.Table]:
        for page in reader.pages():
            yield transform(page).to_arrow()

    return opportunities()


def run(workdir: Path) -> Result:
    reader = Reader(Sandbox.from_env())
    return dlt_common.timed_result(
        "dlt-arrow", workdir, lambda: resource(reader), lambda: reader.read
    )
