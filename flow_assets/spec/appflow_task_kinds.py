"""One AppFlow task as the flow file's: a filter, a rename or cast for the map, a mask,
truncate, check, arithmetic or merge, each noted where AppFlow's cannot go across."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from flow_assets.spec import appflow_model as model
from flow_assets.spec.appflow_import_base import ImportBase
from flow_assets.spec.appflow_model import join
from flow_assets.spec.appflow_tables import (
    ARITHMETIC,
    CHECKS,
    FILTERS,
    LIST_FILTERS,
    MASKS,
    ON_FAILURE,
    data_type,
)


class TaskKindImport(ImportBase):
    """Each kind's method adds to what TaskImport.tasks() sets up (projection, filters, before,
    renames, mapped, after, produced) and then puts in order."""

    def task(self, path: str, task: dict) -> None:
        kind, fields = task["taskType"], task["sourceFields"]
        operator = next(iter(task.get("connectorOperator", {}).values()), None)
        props = task.get("taskProperties", {})
        target = task.get("destinationField")
        if kind == "Filter":
            self.filter(path, fields, operator, props)
        elif kind == "Map":
            self.map(path, fields, target, props)
        elif kind == "Map_all":
            self.map_all = True
            self.map_all_task(path, props)
        elif kind == "Passthrough":
            self.note(
                path, "Passthrough needs no task: fields pass through unless a task changes them"
            )
        elif kind == "Partition":
            self.skip(
                path,
                "Flowbridge partitions S3 output by date and run id only "
                "(destination.s3.partitioning)",
            )
        elif len(fields) != 1 and kind in ("Mask", "Truncate", "Validate"):
            self.skip(path, f"a {kind} task on {len(fields)} fields; the flow file's takes one")
        elif kind == "Mask":
            self.mask(path, fields[0], operator, props)
        elif kind == "Truncate":
            self.truncate(path, fields[0], props)
        elif kind == "Validate":
            self.validate(path, fields[0], operator, props)
        elif not target:
            self.skip(path, f"a {kind} task without destinationField has no result to name")
        elif kind == "Arithmetic":
            self.arithmetic(path, fields, operator, props, target)
        elif kind == "Merge":
            self.merge(path, fields, props, target)

    def filter(self, path: str, fields: list[str], operator: str | None, props: dict) -> None:
        if operator == "PROJECTION":
            self.projection += [f for f in fields if f not in self.projection]
            return
        if len(fields) != 1:
            self.skip(path, f"a filter on {len(fields)} fields; the flow file's names one")
            return
        typed = props.get("DATA_TYPE")
        if operator == "BETWEEN" and {"LOWER_BOUND", "UPPER_BOUND"} <= set(props):
            ours, value = (
                "between",
                [_value(props[k], typed) for k in ("LOWER_BOUND", "UPPER_BOUND")],
            )
        elif "VALUES" in props and operator in LIST_FILTERS:
            ours = LIST_FILTERS[operator]
            value = [_value(v.strip(), typed) for v in props["VALUES"].split(",")]
        elif "VALUES" in props:
            self.skip(
                path,
                f"{operator} with a list of values matches any of them; flow-file "
                "filters all apply (AND), so one filter per value is not the same",
            )
            return
        elif operator in FILTERS and "VALUE" in props:
            ours, value = FILTERS[operator], _value(props["VALUE"], typed)
        else:
            self.skip(path, f"a filter {operator} without the VALUE, VALUES or bounds it needs")
            return
        self.filters.append(
            (path, {"filter": {"field": fields[0], "operator": ours, "value": value}})
        )

    def map(self, path: str, fields: list[str], target: str | None, props: dict) -> None:
        if len(fields) != 1:
            self.skip(path, f"a Map of {len(fields)} fields; the flow file maps one field to one")
            return
        old = fields[0]
        new = target or old
        cast = self.cast(path, props)
        if old in self.produced:  # names the result of an earlier Arithmetic or Merge
            self.produced[new] = self.produced.pop(old)
            self.produced[new]["field"] = new
            if cast:
                self.after.append((path, {"cast": {"field": new, "type": cast}}))
            return
        if old in self.mapped:
            self.skip(
                path, f"'{old}' is mapped a second time; a flow-file map renames a field once"
            )
            return
        self.mapped.append(old)
        if cast:
            self.renames[old] = {"to": new, "type": cast} if new != old else {"type": cast}
        elif new != old:
            self.renames[old] = new

    def cast(self, path: str, props: dict) -> str | None:
        """The flow-file type for DESTINATION_DATA_TYPE, if it differs from the source's."""
        wanted = props.get("DESTINATION_DATA_TYPE")
        if not wanted:
            return None
        ours = data_type(wanted)
        if ours is None:
            self.skip(
                join(path, "taskProperties.DESTINATION_DATA_TYPE"),
                f"'{wanted}' has no flow-file type; the field keeps its own",
            )
            return None
        if data_type(props.get("SOURCE_DATA_TYPE")) == ours:
            return None  # same kind of type: nothing to cast
        return ours

    def map_all_task(self, path: str, props: dict) -> None:
        try:
            exclude = json.loads(props.get("EXCLUDE_SOURCE_FIELDS_LIST", "[]"))
        except json.JSONDecodeError:
            exclude = None
        if not (isinstance(exclude, list) and all(isinstance(x, str) for x in exclude)):
            self.skip(
                join(path, "taskProperties.EXCLUDE_SOURCE_FIELDS_LIST"),
                'not a JSON list of field names such as ["a", "b"]',
            )
        elif exclude:
            self.before.append((path, {"map_all": {"exclude": exclude}}))
        else:
            self.note(path, "Map_all without exclusions needs no task: every field is written")

    def mask(self, path: str, name: str, operator: str | None, props: dict) -> None:
        how = MASKS.get(str(operator))
        if how is None:
            self.skip(
                path,
                f"a Mask with operator {operator}: only MASK_ALL, MASK_FIRST_N, MASK_LAST_N mask",
            )
            return
        spec: dict[str, Any] = {"field": name, "how": how}
        if how != "all":
            length = props.get("MASK_LENGTH", "")
            if not length.isdigit():
                self.skip(path, f"{operator} needs MASK_LENGTH, a whole number")
                return
            spec["n"] = int(length)
        char = props.get("MASK_VALUE", "*")
        if len(char) != 1:
            self.skip(
                join(path, "taskProperties.MASK_VALUE"),
                f"'{char}' is not one character; masked with '*'",
            )
        elif char != "*":
            spec["char"] = char
        self.after.append((path, {"mask": spec}))

    def truncate(self, path: str, name: str, props: dict) -> None:
        length = props.get("TRUNCATE_LENGTH", "")
        if not length.isdigit():
            self.skip(path, "a Truncate needs TRUNCATE_LENGTH, a whole number")
            return
        self.after.append((path, {"truncate": {"field": name, "length": int(length)}}))

    def validate(self, path: str, name: str, operator: str | None, props: dict) -> None:
        check = CHECKS.get(str(operator))
        if check is None:
            self.skip(path, f"a Validate with operator {operator}: only VALIDATE_* operators check")
            return
        spec = {"field": name, "check": check}
        action = props.get("VALIDATION_ACTION")
        if action in ON_FAILURE:
            spec["on_failure"] = ON_FAILURE[action]
        else:
            self.skip(
                join(path, "taskProperties.VALIDATION_ACTION"),
                f"'{action}' is not DropRecord or TerminateFlow: failed records are "
                "quarantined (kept in <flow>/rejected with the reason)",
            )
        self.after.append((path, {"validate": spec}))

    def arithmetic(
        self, path: str, fields: list[str], operator: str | None, props: dict, target: str
    ) -> None:
        ours = ARITHMETIC.get(str(operator))
        order = props.get("MATH_OPERATION_FIELDS_ORDER")
        operands = [f.strip() for f in order.split(",")] if order else fields
        if ours is None or len(operands) != 2:
            self.skip(
                path,
                f"an Arithmetic {operator} of {len(operands)} fields; the flow file's "
                "adds, subtracts, multiplies or divides two",
            )
            return
        spec = {"field": target, "operator": ours, "operands": operands}
        self.produced[target] = spec
        self.after.append((path, {"arithmetic": spec}))

    def merge(self, path: str, fields: list[str], props: dict, target: str) -> None:
        text = props.get("CONCAT_FORMAT")
        fmt = _concat_format(text, fields) if text else None
        if fmt is None:
            self.skip(path, "a Merge needs CONCAT_FORMAT naming its fields, e.g. '${A} ${B}'")
            return
        spec = {"field": target, "format": fmt}
        self.produced[target] = spec
        self.after.append((path, {"merge": spec}))


def _value(text: str, appflow_type: str | None) -> Any:
    """A filter value in its type: AppFlow writes them all as text (datetimes in epoch ms)."""
    kind = data_type(appflow_type)
    if kind in (None, "integer", "float") and re.fullmatch(r"-?\d+", text):
        return int(text)
    if kind in (None, "float") and re.fullmatch(r"-?\d*\.\d+", text):
        return float(text)
    if kind == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kind in ("date", "datetime"):
        if text.isdigit():
            moment = datetime.fromtimestamp(int(text) / 1000, UTC)
            return moment.date() if kind == "date" else moment
        parsed = model.to_datetime(text)
        if parsed:
            return parsed.date() if kind == "date" else parsed
    return text


def _concat_format(text: str, fields: list[str]) -> str | None:
    """'${A} ${B}' (or '{A} {B}') as the flow file's merge format '{A} {B}'."""
    if "${" in text:
        pieces = re.split(r"\$\{([^}]*)\}", text)
        return "".join(
            f"{{{p}}}" if i % 2 else p.replace("{", "{{").replace("}", "}}")
            for i, p in enumerate(pieces)
        )
    return text if any(f"{{{f}}}" in text for f in fields) else None
