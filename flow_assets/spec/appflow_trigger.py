"""An AppFlow flow's triggerConfig as the flow file's trigger: on demand, on source events, or
on a schedule (rate or 5-field cron)."""

from __future__ import annotations

import re
from typing import Any

from flow_assets.spec import appflow_model as model
from flow_assets.spec.appflow_import_base import ImportBase
from flow_assets.spec.appflow_model import join
from flow_assets.spec.appflow_tables import CRON, RATE


class TriggerImport(ImportBase):
    def trigger(self, status: str | None) -> Any:
        config = self.req["triggerConfig"]
        kind = config["triggerType"]
        if kind == "OnDemand":
            return "on_demand"
        if kind == "Event":
            self.note(
                "triggerConfig.triggerType",
                "Event: a sensor asks the source every min_interval_minutes (5) whether records "
                "changed and runs the flow when they did; AppFlow's events carry only the "
                "changed records, so give the flow source.incremental (cursor_field: "
                "SystemModstamp) to read only those",
            )
            return {"event": "source_changes", **({"status": "on"} if status == "Active" else {})}
        path = "triggerConfig.triggerProperties.Scheduled"
        scheduled = config.get("triggerProperties", {}).get("Scheduled")
        if scheduled is None:
            raise self.fail(path, "is required for triggerType Scheduled; add it")
        expression = self.schedule(
            scheduled["scheduleExpression"], join(path, "scheduleExpression")
        )
        if expression is None:
            return "on_demand"
        trigger = {"schedule": expression, "timezone": scheduled.get("timezone") or "UTC"}
        if status == "Active":
            trigger["status"] = "on"
        if "scheduleStartTime" in scheduled:
            trigger["start"] = model.to_datetime(scheduled["scheduleStartTime"]).isoformat()
        if scheduled.get("scheduleOffset"):
            trigger["offset_minutes"] = self.offset(scheduled["scheduleOffset"], path)
        for key, why in (
            ("scheduleEndTime", "a schedule here runs until it is turned off"),
            ("flowErrorDeactivationThreshold", "a schedule here stays on after failed runs"),
        ):
            if key in scheduled:
                self.skip(join(path, key), why)
        return trigger

    def offset(self, seconds: int, path: str) -> int:
        """AppFlow's scheduleOffset (seconds, up to 36000) as whole minutes."""
        minutes = (seconds + 30) // 60
        if seconds % 60:
            self.note(
                join(path, "scheduleOffset"),
                f"{seconds} seconds written as offset_minutes: {minutes} (schedules here "
                "tick on whole minutes)",
            )
        return minutes

    def schedule(self, expression: str, path: str) -> str | None:
        """AppFlow's rate(...) as the flow file spells it, its 6-field cron(...) as 5-field cron."""
        text = expression.strip()
        if m := RATE.fullmatch(text):
            n, unit = int(m[1]), m[2].lower().rstrip("s")
            return f"rate({n} {unit}{'s' if n != 1 else ''})"
        if (m := CRON.fullmatch(text)) and (cron := _cron5(m[1])):
            return cron
        self.skip(
            path,
            f"'{expression}' has no 5-field cron equivalent (a year, L, W or #); "
            "written as on_demand: write trigger.schedule by hand",
        )
        return None


def _cron5(text: str) -> str | None:
    """AppFlow's (EventBridge's) 'm h dom mon dow year' as 'm h dom mon dow', when it fits."""
    parts = text.split()
    if len(parts) != 6 or parts[5] not in ("*", "?") or re.search(r"[LW#]", parts[2] + parts[4]):
        return None
    minute, hour, dom, month, dow, _ = parts
    # EventBridge counts the days of the week 1 (Sunday) to 7; cron 0 (Sunday) to 6.
    dow = "*" if dow == "?" else re.sub(r"(?<![/\d])\d+", lambda m: str(int(m[0]) - 1), dow)
    return " ".join([minute, hour, "*" if dom == "?" else dom, month, dow])
