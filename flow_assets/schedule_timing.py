"""When a schedule's runs happen: its offset written into the cron expression, and its start."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

import dagster as dg

_PART = re.compile(r"^(?:(\*)|(\d+)(?:-(\d+))?)(?:/(\d+))?$")


class OffsetError(ValueError):
    pass


def offset_cron(cron: str, minutes: int) -> str:
    """The 5-field cron expression whose ticks come `minutes` after those of `cron`.

    The day's ticks (hour x minute) are moved; when every day is scheduled alike (day,
    month and weekday fields all *), a tick moved past midnight is the next day's tick at
    that time, which the same expression names. The moved ticks must again be the same
    minutes in every hour they fall in; otherwise OffsetError says what to write instead.
    """
    if minutes == 0:
        return cron
    minute, hour, *days = cron.split()
    ticks = [h * 60 + m for h in _expand(hour, 0, 23, cron) for m in _expand(minute, 0, 59, cron)]
    moved = [t + minutes for t in ticks]
    every_day = all(d == "*" for d in days)
    if every_day:
        moved = [t % (24 * 60) for t in moved]
    elif max(moved) >= 24 * 60:
        raise OffsetError(
            f"offset_minutes {minutes} moves ticks of '{cron}' past midnight, onto other "
            "days than its day fields name; write the shifted cron expression as schedule "
            "(and offset_minutes: 0)"
        )
    by_hour: dict[int, set[int]] = {}
    for t in moved:
        by_hour.setdefault(t // 60, set()).add(t % 60)
    minute_sets = {frozenset(s) for s in by_hour.values()}
    if len(minute_sets) != 1:
        raise OffsetError(
            f"offset_minutes {minutes} moves ticks of '{cron}' to different minutes in "
            "different hours, which one cron expression cannot say; write them as schedule "
            "(and offset_minutes: 0)"
        )
    new_minutes, new_hours = sorted(minute_sets.pop()), sorted(by_hour)
    return " ".join(
        [
            minute if new_minutes == _expand(minute, 0, 59, cron) else _compact(new_minutes, 0, 59),
            hour if new_hours == _expand(hour, 0, 23, cron) else _compact(new_hours, 0, 23),
            *days,
        ]
    )


def _expand(field: str, lo: int, hi: int, cron: str) -> list[int]:
    """The values a cron field of numbers names (*, N, A-B, with /STEP, comma lists)."""
    values: set[int] = set()
    for part in field.split(","):
        m = _PART.match(part)
        if m is None:
            raise OffsetError(
                f"cannot shift '{cron}': its field '{field}' is not numbers, ranges and steps"
            )
        star, first, last, step = m.groups()
        start = lo if star else int(first)
        end = hi if star or (step and last is None) else int(last or first)
        if not lo <= start <= end <= hi:
            raise OffsetError(f"cannot shift '{cron}': '{part}' is outside {lo}-{hi}")
        values.update(range(start, end + 1, int(step or 1)))
    return sorted(values)


def _compact(values: list[int], lo: int, hi: int) -> str:
    """Sorted values as cron writes them: *, A-B, A-B/STEP or a comma list."""
    values = sorted(set(values))
    if values == list(range(lo, hi + 1)):
        return "*"
    if len(values) == 1:
        return str(values[0])
    steps = {b - a for a, b in zip(values, values[1:], strict=False)}
    if len(steps) == 1:
        step = steps.pop()
        if step == 1:
            return f"{values[0]}-{values[-1]}"
        if len(values) > 2:
            return f"{values[0]}-{values[-1]}/{step}"
    return ",".join(map(str, values))


def not_before(start: datetime) -> Callable[[dg.ScheduleEvaluationContext], object]:
    """A schedule's evaluation that skips ticks before `start` (timezone-aware) and runs after."""

    def evaluate(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        tick = context.scheduled_execution_time
        if tick is not None and tick < start:
            return dg.SkipReason(f"the schedule starts at {start.isoformat()}; no run before")
        return dg.RunRequest()

    return evaluate
