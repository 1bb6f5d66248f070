"""Reads flow files and connections.yaml into models; every problem names file, field and fix."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from pydantic import BaseModel, ValidationError

from flow_assets.spec.errors import FlowFileError, Problem, ProblemList, did_you_mean
from flow_assets.spec.models import (
    ENV_REF,
    TASK_KINDS,
    ArithmeticSpec,
    CastSpec,
    ComputeSpec,
    ConnectionSpec,
    Destination,
    DynamoDBSettings,
    Event,
    EventBridgeSettings,
    FilterSpec,
    FlowSpec,
    FormatSpec,
    GlueTable,
    Incremental,
    MapAllSpec,
    MapTarget,
    MapTask,
    MaskSpec,
    MergeSpec,
    Partitions,
    RedshiftSettings,
    S3Encryption,
    S3Settings,
    Schedule,
    Source,
    TruncateSpec,
    ValidateSpec,
    task_kind,
)
from flow_assets.spec.pulls import pull_problems
from flow_assets.spec.s3_source import names_of, s3_source_problems

CONNECTIONS_FILE = "connections.yaml"
# Keys whose values are secrets wherever they appear: they must be ${ENV_VAR} references.
SECRET_KEY = re.compile(r"(secret|password|passwd|token|api_key|apikey|private_key|salt)$", re.I)


@dataclass
class LoadedProject:
    """Every flow that loaded, and every file that did not (with why), from one folder."""

    root: Path
    flows: dict[str, FlowSpec] = field(default_factory=dict)
    flow_files: dict[str, Path] = field(default_factory=dict)
    connections: dict[str, ConnectionSpec] = field(default_factory=dict)
    errors: dict[Path, FlowFileError] = field(default_factory=dict)

    @property
    def problems(self) -> list[Problem]:
        return [p for err in self.errors.values() for p in err.problems]


_MODEL_BY_PARENT: dict[str, type[BaseModel]] = {
    "": FlowSpec,
    "source": Source,
    "incremental": Incremental,
    "filter": FilterSpec,
    "compute": ComputeSpec,
    "map_all": MapAllSpec,
    "arithmetic": ArithmeticSpec,
    "merge": MergeSpec,
    "truncate": TruncateSpec,
    "cast": CastSpec,
    "format": FormatSpec,
    "mask": MaskSpec,
    "validate": ValidateSpec,
    "destination": Destination,
    "s3": S3Settings,
    "dynamodb": DynamoDBSettings,
    "eventbridge": EventBridgeSettings,
    "redshift": RedshiftSettings,
    "encryption": S3Encryption,
    "glue": GlueTable,
    "partitions": Partitions,
    "trigger": Schedule,
    "schedule": Schedule,
    "event": Event,
    "MapTarget": MapTarget,
}
# Union members pydantic names in an error's location; they are not keys the user wrote.
_UNION_MEMBERS = {"str", "int", "float", "bool", "list[str]", "MapTarget"}


def read_yaml(path: Path) -> Any:
    """Parse one YAML file; a syntax error names the line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowFileError.single(str(path), "", f"cannot read file: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise FlowFileError.single(
            str(path), "", f"not valid YAML at {where}: {exc.problem}; fix the syntax there"
        ) from exc
    except yaml.YAMLError as exc:
        raise FlowFileError.single(str(path), "", f"not valid YAML: {exc}") from exc


def literal_secrets(raw: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """Yield (field path, key) for every secret-looking key holding a literal value."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            sub = f"{path}.{key}" if path else str(key)
            if SECRET_KEY.search(str(key)) and isinstance(value, str | int | float):
                if not (
                    isinstance(value, str) and (m := ENV_REF.match(value)) and not m["default"]
                ):
                    yield sub, str(key)
            else:
                yield from literal_secrets(value, sub)
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            yield from literal_secrets(item, f"{path}[{i}]")


def _secret_problems(raw: Any, file: str) -> list[Problem]:
    return [
        Problem(
            file,
            where,
            f"'{key}' is a secret and must not be written in the file: "
            f"use an environment variable reference such as ${{{key.upper()}}}",
        )
        for where, key in literal_secrets(raw)
    ]


def _keys_at(parent: tuple[Any, ...]) -> list[str]:
    """The keys allowed where an unknown key was found, for a precise did-you-mean."""
    names = [
        p for p in parent if isinstance(p, str) and (p == "MapTarget" or p not in _UNION_MEMBERS)
    ]
    model = _MODEL_BY_PARENT.get(names[-1] if names else "")
    if model is None:
        return sorted({k for m in _MODEL_BY_PARENT.values() for k in _model_keys(m)})
    return sorted(_model_keys(model))


def _model_keys(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def format_loc(loc: tuple[Any, ...]) -> str:
    """('tasks', 2, 'filter', 'filter', 'operator') -> 'tasks[2].filter.operator'."""
    out = ""
    previous = None
    for part in loc:
        if part in _UNION_MEMBERS:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != previous:
            out += f".{part}" if out else str(part)
        previous = part
    return out


def pydantic_problems(exc: ValidationError, file: str) -> list[Problem]:
    problems = []
    for err in exc.errors():
        kind, value = err["type"], err.get("input")
        if "str" in err["loc"] and isinstance(value, dict):
            continue  # the other member of a `str | Model` union explains this one
        if kind == "extra_forbidden" and "MapTarget" in err["loc"]:
            err["loc"] = (*err["loc"][:-1], "MapTarget", err["loc"][-1])
        loc = tuple(p for p in err["loc"] if not str(p).startswith(("function-", "literal[")))
        where = format_loc(loc)
        if kind == "extra_forbidden":
            key = str(loc[-1])
            where = format_loc(loc[:-1])
            allowed = _keys_at(loc[:-1])
            msg = (
                f"unknown key '{key}'{did_you_mean(key, allowed)}; "
                f"allowed here: {', '.join(allowed)}"
            )
        elif kind == "missing":
            msg = "is required; add it"
        elif kind == "unknown_task":
            key = next(iter(value)) if isinstance(value, dict) and value else repr(value)
            msg = (
                f"unknown task '{key}'{did_you_mean(str(key), TASK_KINDS)}; "
                f"a task is one key of: {', '.join(TASK_KINDS)}"
            )
        elif kind == "literal_error":
            allowed = re.findall(r"'([^']*)'", err["msg"])
            msg = (
                f"'{value}' is not one of: {', '.join(allowed)}{did_you_mean(str(value), allowed)}"
            )
        else:
            msg = err["msg"].removeprefix("Value error, ")
        problems.append(Problem(file, where, msg))
    return problems


def load_connections(path: Path) -> dict[str, ConnectionSpec]:
    """Read connections.yaml: a mapping of connection name to its settings."""
    file = str(path)
    raw = read_yaml(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FlowFileError.single(file, "", "must be a mapping of connection name to settings")
    problems = ProblemList(_secret_problems(raw, file))
    connections: dict[str, ConnectionSpec] = {}
    for name, settings in raw.items():
        if not re.match(r"^[a-z][a-z0-9_]*$", str(name)):
            problems.add(file, str(name), "connection names are lower_snake_case")
            continue
        if not isinstance(settings, dict):
            problems.add(file, str(name), "must be a mapping with at least 'connector'")
            continue
        try:
            connections[name] = ConnectionSpec.model_validate(settings)
        except ValidationError as exc:
            for p in pydantic_problems(exc, file):
                problems.add(file, f"{name}.{p.path}", p.message)
    problems.raise_if_any()
    return connections


def load_flow_file(path: Path, connections: dict[str, ConnectionSpec] | None = None) -> FlowSpec:
    """Read and check one flow file; raise FlowFileError listing every problem in it."""
    file = str(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise FlowFileError.single(
            file, "", "a flow file is a mapping with source, tasks, destination"
        )
    raw.setdefault("name", path.stem)
    problems = ProblemList(_secret_problems(raw, file))
    try:
        flow = FlowSpec.model_validate(raw)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, file))
        problems.raise_if_any()
        raise  # unreachable: pydantic always reports at least one error
    problems.extend(_reference_problems(flow, file, connections))
    problems.raise_if_any()
    return flow


def _reference_problems(
    flow: FlowSpec, file: str, connections: dict[str, ConnectionSpec] | None
) -> list[Problem]:
    """Offline checks: the connection exists, every task names a field that exists at its step."""
    problems = ProblemList()
    src = flow.source
    if connections is not None:
        if src.connection not in connections:
            problems.add(
                file,
                "source.connection",
                f"'{src.connection}' is not defined in {CONNECTIONS_FILE}"
                f"{did_you_mean(src.connection, connections)}",
            )
        elif src.connector and src.connector not in names_of(connections[src.connection]):
            problems.add(
                file,
                "source.connector",
                f"'{src.connector}' differs from connection '{src.connection}', which is "
                f"'{connections[src.connection].connector}'; remove source.connector or fix it",
            )
    if src.incremental and src.fields and src.incremental.cursor_field not in src.fields:
        problems.add(
            file,
            "source.incremental.cursor_field",
            f"'{src.incremental.cursor_field}' is not in source.fields"
            f"{did_you_mean(src.incremental.cursor_field, src.fields)}; add it to source.fields",
        )
    problems.extend(pull_problems(flow, file))
    problems.extend(s3_source_problems(flow, file, connections))
    if src.fields is None:
        return problems  # without a field list the names are checked against the source's describe
    problems.extend(field_reference_problems(flow, list(src.fields), file))
    return problems


def field_reference_problems(flow: FlowSpec, source_fields: list[str], file: str) -> list[Problem]:
    """Walk the tasks in order, tracking the fields that exist at each step."""
    problems = ProblemList()
    available = list(source_fields)

    def need(name: str, where: str) -> None:
        if name not in available:
            problems.add(
                file,
                where,
                f"'{name}' is not a field at this step{did_you_mean(name, available)}; "
                f"fields here: {', '.join(available)}",
            )

    for i, task in enumerate(flow.tasks):
        spec = flow.task_specs[i]
        kind = task_kind(task)
        where = f"tasks[{i}].{kind}"
        if isinstance(task, MapTask):
            for old, target in task.map.items():
                need(old, f"{where}.{old}")
                new = target if isinstance(target, str) else (target.to or old)
                if old in available:
                    available[available.index(old)] = new
        elif isinstance(spec, ComputeSpec):
            try:
                roots = pl.sql_expr(spec.expression).meta.root_names()
            except Exception as exc:  # polars raises several types for bad SQL
                problems.add(file, f"{where}.expression", f"not a valid SQL expression: {exc}")
                roots = []
            for name in roots:
                need(name, f"{where}.expression")
            if spec.field not in available:
                available.append(spec.field)
        elif isinstance(spec, MapAllSpec):
            for j, name in enumerate(spec.exclude):
                need(name, f"{where}.exclude[{j}]")
            available = [n for n in available if n not in spec.exclude]
        elif isinstance(spec, ArithmeticSpec | MergeSpec):
            key = "operands" if isinstance(spec, ArithmeticSpec) else "format"
            for name in spec.fields:
                need(name, f"{where}.{key}")
            if spec.field not in available:
                available.append(spec.field)
        else:
            need(spec.field, f"{where}.field")
            if isinstance(spec, FormatSpec) and spec.into and spec.into not in available:
                available.append(spec.into)
    for j, key in enumerate(flow.destination.key or []):
        need(key, f"destination.key[{j}]")
    return problems


def load_project(root: Path) -> LoadedProject:
    """Load every flow file under root; a broken file is recorded, never stops the others."""
    project = LoadedProject(root=root)
    conn_path = root / CONNECTIONS_FILE
    connections: dict[str, ConnectionSpec] | None = None
    if conn_path.exists():
        try:
            connections = load_connections(conn_path)
            project.connections = connections
        except FlowFileError as exc:
            project.errors[conn_path] = exc
    else:
        connections = {}
    for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
        if path.name == CONNECTIONS_FILE:
            continue
        try:
            flow = load_flow_file(path, connections)
        except FlowFileError as exc:
            project.errors[path] = exc
            continue
        if flow.name in project.flows:
            project.errors[path] = FlowFileError.single(
                str(path),
                "name",
                f"'{flow.name}' is already the name of {project.flow_files[flow.name]}; "
                "flow names are unique",
            )
            continue
        project.flows[flow.name] = flow
        project.flow_files[flow.name] = path
    return project
