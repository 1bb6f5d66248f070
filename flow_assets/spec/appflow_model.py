"""AppFlow's flow shapes from botocore's own service model: strict checks, CloudFormation's spelling."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, Shape, StructureShape

from flow_assets.spec.errors import did_you_mean

Found = list[tuple[str, str]]  # (JSON path, what is wrong there)


@cache
def _service():
    return botocore.session.get_session().get_service_model("appflow")


def request_shape() -> StructureShape:
    """CreateFlow's request: what `aws appflow create-flow --cli-input-json` takes."""
    return _service().operation_model("CreateFlow").input_shape


def describe_shape() -> StructureShape:
    """DescribeFlow's answer: the request's members plus the flow's state (flowArn, createdAt...)."""
    return _service().operation_model("DescribeFlow").output_shape


def enum(shape_name: str, member: str | None = None) -> list[str]:
    """The allowed values of a string shape, or of one member of a structure."""
    found = _service().shape_for(shape_name)
    if member is not None:
        found = found.members[member]
    return list(found.enum)


def members(shape_name: str) -> list[str]:
    return list(_service().shape_for(shape_name).members)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check(value: Any, where: Shape, path: str = "") -> Found:
    """Everything in value that breaks the shape: required members, unknown keys, types, enums,
    patterns, lengths and ranges (botocore's own ParamValidator skips the last four)."""
    if fn := _intrinsic(value):
        return [(path, f"is a CloudFormation function ({fn}); write the resolved value")]
    if isinstance(where, StructureShape):
        return _check_structure(value, where, path)
    if isinstance(where, ListShape):
        if not isinstance(value, list):
            return [(path, f"expected an array, got {_kind(value)}")]
        found = _check_size(len(value), where, path, "items")
        for i, item in enumerate(value):
            found += check(item, where.member, f"{path}[{i}]")
        return found
    if isinstance(where, MapShape):
        if not isinstance(value, dict):
            return [(path, f"expected an object, got {_kind(value)}")]
        found = _check_size(len(value), where, path, "entries")
        for key, item in value.items():
            found += [(path, f"key '{key}': {msg}") for _, msg in check(key, where.key, path)]
            found += check(item, where.value, join(path, str(key)))
        return found
    return _check_scalar(value, where, path)


def _check_structure(value: Any, where: StructureShape, path: str) -> Found:
    if not isinstance(value, dict):
        return [(path, f"expected an object, got {_kind(value)}")]
    found = [
        (join(path, n), "is required; add it") for n in where.required_members if n not in value
    ]
    for key, item in value.items():
        member = where.members.get(key)
        if member is None:
            allowed = list(where.members)
            found.append((path, f"unknown key '{key}'{did_you_mean(str(key), allowed)}; "
                                f"allowed here: {', '.join(allowed)}"))  # fmt: skip
        elif item is None:
            found.append((join(path, key), "is null; remove it or give it a value"))
        else:
            found += check(item, member, join(path, key))
    return found


def _check_size(size: int, where: Shape, path: str, unit: str) -> Found:
    low, high = where.metadata.get("min"), where.metadata.get("max")
    if low is not None and size < low:
        return [(path, f"has {size} {unit}; at least {low} needed")]
    if high is not None and size > high:
        return [(path, f"has {size} {unit}; at most {high} allowed")]
    return []


def _check_scalar(value: Any, where: Shape, path: str) -> Found:
    kind, meta = where.type_name, where.metadata
    if kind == "string":
        if not isinstance(value, str):
            return [(path, f"expected a string, got {_kind(value)}")]
        allowed = meta.get("enum")
        if allowed and value not in allowed:
            hint = did_you_mean(value, allowed)
            return [(path, f"'{value}' is not one of: {', '.join(allowed)}{hint}")]
        found = _check_size(len(value), where, path, "characters")
        # Whole-value patterns, as AppFlow applies them (FlowName: "Spaces are not allowed").
        if (pattern := meta.get("pattern")) and not _pattern(pattern).fullmatch(value):
            found.append((path, f"'{value}' does not match the pattern {pattern}"))
        return found
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [(path, f"expected a whole number, got {_kind(value)}")]
        low, high = meta.get("min"), meta.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            return [(path, f"{value} is out of range: {low} to {high}")]
        return []
    if kind in ("double", "float") and (
        isinstance(value, bool) or not isinstance(value, int | float)
    ):
        return [(path, f"expected a number, got {_kind(value)}")]
    if kind == "boolean" and not isinstance(value, bool):
        return [(path, f"expected true or false, got {_kind(value)}")]
    if kind == "timestamp" and to_datetime(value) is None:
        return [(path, f"expected a timestamp (ISO 8601 or epoch seconds), got {value!r}")]
    return []


@cache
def _pattern(text: str) -> re.Pattern[str]:
    # Java spells characters beyond U+FFFF as UTF-16 surrogate pairs; Python as code points.
    return re.compile(text.replace(r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF"))


def to_datetime(value: Any) -> datetime | None:
    """A timestamp as JSON spells it: ISO 8601 text, or seconds since the epoch; None if neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _kind(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "null" if value is None else "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _intrinsic(value: Any) -> str | None:
    """'Ref', 'Fn::Sub'...: a CloudFormation function where a value belongs."""
    if isinstance(value, dict) and len(value) == 1:
        key = str(next(iter(value)))
        if key == "Ref" or key.startswith("Fn::"):
            return key
    return None


# CloudFormation names this member differently from the API, not just in another case.
_CFN_ALIASES = {"failonfirsterror": "failOnFirstDestinationError"}


def from_cloudformation(
    props: dict[str, Any], base: str
) -> tuple[dict[str, Any], Callable[[str], str]]:
    """AWS::AppFlow::Flow properties in the API's shape, and a function that turns an API path
    back into the template's path, so that messages name what the user wrote."""
    paths: dict[str, str] = {}
    converted = _cfn(props, request_shape(), "", base, paths)

    def where(api_path: str) -> str:
        head = api_path
        while head not in paths:  # "" is always there
            head = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", head)
        rest = re.sub(r"\.([a-z])", lambda m: "." + m[1].upper(), api_path[len(head) :])
        return (paths[head] + rest).lstrip(".")

    return converted, where


def _cfn(value: Any, where: Shape, api: str, cfn: str, paths: dict[str, str]) -> Any:
    paths[api] = cfn
    if isinstance(where, StructureShape) and isinstance(value, dict) and not _intrinsic(value):
        out: dict[str, Any] = {}
        names = {name.lower(): name for name in where.members}
        for key, item in value.items():
            name = _CFN_ALIASES.get(str(key).lower()) or names.get(str(key).lower(), key)
            member = where.members.get(name)
            if member is None:
                out[key] = item  # left for check() to report as unknown
            elif name == "triggerProperties" and isinstance(item, dict) and "Scheduled" not in item:
                # A template puts the Scheduled properties straight under TriggerProperties.
                paths[join(api, name)] = join(cfn, key)
                scheduled = member.members["Scheduled"]
                inner = _cfn(item, scheduled, join(api, f"{name}.Scheduled"), join(cfn, key), paths)
                out[name] = {"Scheduled": inner}
            else:
                out[name] = _cfn(item, member, join(api, name), join(cfn, key), paths)
        return out
    if isinstance(where, MapShape) and _is_key_value_list(value):
        # Tags and TaskProperties are [{Key, Value}, ...] in a template, maps in the API.
        for i, entry in enumerate(value):
            paths[join(api, str(entry["Key"]))] = f"{cfn}[{i}]"
        return {entry["Key"]: entry["Value"] for entry in value}
    if isinstance(where, ListShape) and isinstance(value, list):
        return [
            _cfn(item, where.member, f"{api}[{i}]", f"{cfn}[{i}]", paths)
            for i, item in enumerate(value)
        ]
    return value


def _is_key_value_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(e, dict) and set(e) == {"Key", "Value"} for e in value
    )
