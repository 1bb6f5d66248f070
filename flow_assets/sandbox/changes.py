"""Records changing in the sandbox as users change them (updates and deletes that move
SystemModstamp), and Salesforce's replication resources over them: sObject Get Updated and
Get Deleted, with their documented window rules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from flow_assets.sandbox import salesforce_data as data

REPLICATION_DAYS = 30  # Get Updated / Get Deleted answer for no more than 30 days back
MAX_IDS = 600_000  # more than this is EXCEEDED_ID_LIMIT
_STAMP = pl.Datetime("ms", "UTC")
_SALT = 0x0C4A96E5  # the changes' own random streams, apart from the data's


@dataclass(frozen=True)
class ChangeSet:
    """What one change call did: the Ids it updated and deleted, and their SystemModstamp."""

    updated: list[str]
    deleted: list[str]
    stamp: datetime

    def as_json(self) -> dict[str, Any]:
        return {"updated": self.updated, "deleted": self.deleted, "stamp": wire_stamp(self.stamp)}


def wire_stamp(moment: datetime) -> str:
    """A datetime as Salesforce writes one: 2024-05-08T21:20:00.000+0000."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}+0000"
    )


def apply_changes(
    frame: pl.DataFrame, count: int, seed: int, delete: int, now: datetime
) -> tuple[pl.DataFrame, ChangeSet]:
    """`count` live records updated and `delete` others deleted, picked by `seed`.

    An update gives an Opportunity a new Amount and StageName (with the Probability, IsClosed
    and IsWon that go with it) and any record a new LastModifiedDate; a delete sets IsDeleted,
    so only queryAll sees the record. Both move SystemModstamp to `now`, or just past the
    newest stamp when the clock is behind it, so every change is newer than all before it.
    """
    for name, value in (("count", count), ("delete", delete), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer")
    live = frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"), "IsDeleted")
    live = live.filter(~pl.col("IsDeleted"))
    if count + delete > live.height:
        raise ValueError(f"only {live.height} live records: cannot change {count + delete}")
    picked = live.sample(n=count + delete, seed=seed)["row"]
    newest = frame["SystemModstamp"].max()
    stamp = now.astimezone(UTC).replace(microsecond=now.microsecond // 1000 * 1000)
    if newest is not None and stamp <= newest:
        stamp = newest + timedelta(milliseconds=1)
    row = pl.int_range(pl.len(), dtype=pl.UInt32)
    updated, deleted = row.is_in(picked[:count].implode()), row.is_in(picked[count:].implode())
    at = pl.lit(stamp, dtype=_STAMP)
    columns = [
        pl.when(updated | deleted)
        .then(at)
        .otherwise(pl.col("SystemModstamp"))
        .alias("SystemModstamp"),
        pl.when(updated).then(at).otherwise(pl.col("LastModifiedDate")).alias("LastModifiedDate"),
        (pl.col("IsDeleted") | deleted).alias("IsDeleted"),
    ]
    if {"Amount", "StageName"} <= set(frame.columns):
        columns += _new_deal(updated, seed)
    changed = frame.with_columns(columns)
    ids = frame["Id"].gather(picked).to_list()
    return changed, ChangeSet(sorted(ids[:count]), sorted(ids[count:]), stamp)


def _new_deal(updated: pl.Expr, seed: int) -> list[pl.Expr]:
    """A new Amount (same spread as the data's) and StageName with the fields that follow it."""
    rand = data._Rand(seed, _SALT)
    index = pl.int_range(pl.len(), dtype=pl.Int64)
    amount = ((rand.u(1, index).pow(1.5) * math.log(200_000 / 300)).exp() * 300).round(2)
    stage = data._weighted(rand.u(2, index), [(name, w) for name, _, w in data.STAGES])
    stage = pl.when(updated).then(stage).otherwise(pl.col("StageName"))
    probability = {name: p for name, p, _ in data.STAGES}
    return [
        pl.when(updated).then(amount).otherwise(pl.col("Amount")).alias("Amount"),
        stage.alias("StageName"),
        stage.replace_strict(probability, return_dtype=pl.Float64).alias("Probability"),
        stage.str.starts_with("Closed").alias("IsClosed"),
        (stage == "Closed Won").alias("IsWon"),
    ]


# --- Get Updated / Get Deleted ----------------------------------------------------------


def replication(
    kind: str, frame: pl.DataFrame, params: dict[str, list[str]], now: datetime
) -> tuple[int, Any]:
    """(status, JSON body) of sobjects/<Object>/updated/ or /deleted/?start=..&end=.."""
    try:
        start, end = _window(params, now)
    except WindowError as exc:
        return 400, _error(exc.code, exc.message)
    # Covered: up to the end, or to the current minute when the end is later (what changes
    # within this minute is not settled yet); the next call starts there.
    covered = min(end, _minute(now))
    in_window = (pl.col("SystemModstamp") >= start) & (pl.col("SystemModstamp") < covered)
    if kind == "updated":
        ids = frame.filter(in_window & ~pl.col("IsDeleted")).sort("Id")["Id"]
        if ids.len() > MAX_IDS:
            return 400, _error("EXCEEDED_ID_LIMIT", "record limit reached. narrow the range")
        return 200, {"ids": ids.to_list(), "latestDateCovered": wire_stamp(covered)}
    gone = frame.filter(in_window & pl.col("IsDeleted")).sort("SystemModstamp", "Id")
    records = [
        {"id": rid, "deletedDate": wire_stamp(stamp)}
        for rid, stamp in gone.select("Id", "SystemModstamp").iter_rows()
    ]
    return 200, {
        "deletedRecords": records,
        "earliestDateAvailable": wire_stamp(data.START),  # nothing was ever purged
        "latestDateCovered": wire_stamp(covered),
    }


class WindowError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _window(params: dict[str, list[str]], now: datetime) -> tuple[datetime, datetime]:
    """(start, end) floored to the minute, as Salesforce reads them."""
    moments = []
    for name in ("start", "end"):
        text = (params.get(name) or [""])[0]
        if not text:
            raise WindowError("MISSING_ARGUMENT", f"{name} not specified")
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise WindowError(
                "INVALID_REPLICATION_DATE",
                f"{name}: '{text}' is not a dateTime such as 2024-05-06T00:00:00+00:00 "
                "(URL-encode the '+')",
            ) from None
        moments.append(_minute(moment if moment.tzinfo else moment.replace(tzinfo=UTC)))
    start, end = moments
    if start < _minute(now) - timedelta(days=REPLICATION_DAYS):
        raise WindowError(
            "INVALID_REPLICATION_DATE", f"startDate cannot be more than {REPLICATION_DAYS} days ago"
        )
    if end <= start:
        raise WindowError(
            "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate"
        )
    return start, end


def _minute(moment: datetime) -> datetime:
    """Salesforce ignores the seconds of both ends: 12:30:15 is 12:30:00 UTC."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _error(code: str, message: str) -> list[dict[str, str]]:
    return [{"message": message, "errorCode": code}]
