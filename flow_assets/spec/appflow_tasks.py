"""AppFlow's tasks as the flow file's, in the order the flow file runs them: filters, Map_all,
one map with every rename, then the rest under the new names; and the source.fields they read."""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from flow_assets.spec.appflow_task_kinds import TaskKindImport
from flow_assets.spec.loading import pydantic_problems
from flow_assets.spec.models import Task

_TASK = TypeAdapter(Task)


class TaskImport(TaskKindImport):
    def tasks(self, source: dict) -> list[dict]:
        """AppFlow's tasks name source fields; the flow file's run in order. So: filters first
        (pushed down to the source), then Map_all, one `map` with every rename, then the rest with
        fields under their new names."""
        self.projection: list[str] = []
        self.filters: list[tuple[str, dict]] = []
        self.before: list[tuple[str, dict]] = []  # map_all, on source names
        self.renames: dict[str, Any] = {}
        self.mapped: list[str] = []
        self.after: list[tuple[str, dict]] = []
        self.produced: dict[str, dict] = {}  # Arithmetic / Merge results by name
        self.map_all = False
        for i, task in enumerate(self.req["tasks"]):
            self.task(f"tasks[{i}]", task)
        new_name = {
            old: t if isinstance(t, str) else t.get("to", old) for old, t in self.renames.items()
        }
        ordered = [
            *self.filters,
            *self.before,
            *([("tasks", {"map": self.renames})] if self.renames else []),
            *[(path, _renamed(task, new_name)) for path, task in self.after],
        ]
        used = [
            name
            for _, task in [*self.filters, *self.before, *self.after]
            for name in _names(task)
            if name not in self.produced
        ]
        self.source_fields(source, list(dict.fromkeys(used)))
        return [task for path, task in ordered if self.accepted(path, task)]

    def accepted(self, path: str, task: dict) -> bool:
        try:
            _TASK.validate_python(task)
        except ValidationError as exc:
            kind = next(iter(task))
            if exc.errors()[0]["type"] == "unknown_task":
                self.skip(path, f"the flow file has no '{kind}' task yet")
            else:
                why = "; ".join(p.message for p in pydantic_problems(exc, self.file))
                self.skip(path, f"as a '{kind}' task: {why}")
            return False
        return True

    def source_fields(self, source: dict, used: list[str]) -> None:
        """source.fields: AppFlow's projection, less the fields no Map sends anywhere; `used`
        are the source fields the tasks read."""
        fields = list(self.projection)
        if self.mapped and not self.map_all:
            unmapped = [f for f in fields if f not in self.mapped]
            needed = [f for f in unmapped if f in used]
            if unmapped:
                fields = [f for f in fields if f not in unmapped or f in needed]
                left = [f for f in unmapped if f not in needed]
                if left:
                    self.note(
                        "tasks",
                        f"source.fields leaves out {', '.join(left)}: AppFlow reads "
                        "them but no Map sends them to the destination",
                    )
            for name in needed:
                self.skip(
                    "tasks",
                    f"'{name}' is read for a task but mapped to no destination "
                    "field: AppFlow leaves it out, Flowbridge writes it",
                )
            if not fields:
                fields = [*self.mapped, *(u for u in used if u not in self.mapped)]
        cursor = source.get("incremental", {}).get("cursor_field")
        if fields and cursor and cursor not in fields:
            fields.append(cursor)
            self.note(
                "sourceFlowConfig.incrementalPullConfig",
                f"the cursor field {cursor} is added to source.fields",
            )
        if fields:
            source["fields"] = list(dict.fromkeys(fields))
            source_keys = [
                "connector", "connection", "object", "format", "fields", "incremental",
                "page_size", "include_deleted",
            ]  # fmt: skip
            ordered = {k: source[k] for k in source_keys if k in source}
            source.clear()
            source.update(ordered)


def _names(task: dict) -> list[str]:
    """Every field a flow-file task reads or names."""
    kind, spec = next(iter(task.items()))
    if kind == "map" or not isinstance(spec, dict):
        return []
    names = [spec["field"]] if isinstance(spec.get("field"), str) else []
    names += [o for o in spec.get("operands", []) if isinstance(o, str)]
    names += re.findall(r"(?<!\{)\{([^{}]+)\}", spec.get("format", "")) if "merge" in task else []
    return names + list(spec.get("exclude", []))


def _renamed(task: dict, new_name: dict[str, str]) -> dict:
    """The task with source field names replaced by the names the `map` gave them."""
    kind, spec = next(iter(task.items()))
    spec = dict(spec)
    if kind not in ("arithmetic", "merge") and spec.get("field") in new_name:
        spec["field"] = new_name[spec["field"]]
    if "operands" in spec:
        spec["operands"] = [
            new_name.get(o, o) if isinstance(o, str) else o for o in spec["operands"]
        ]
    if "format" in spec:
        spec["format"] = re.sub(
            r"(?<!\{)\{([^{}]+)\}", lambda m: "{" + new_name.get(m[1], m[1]) + "}", spec["format"]
        )
    return {kind: spec}
