"""The pandera schema a flow implies (types, nullability, its validate tasks, unique keys),
checked against the records a run loads, in batches so memory stays flat."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

from flow_assets.spec.models import FlowSpec, MapTask, MaskSpec, ValidateSpec
from flow_assets.transforms.tasks import CHECKS, REASON, STATUS


@dataclass
class CheckReport:
    passed: bool
    records_checked: int = 0
    failures: int = 0
    failures_by_check: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)


def final_names(flow: FlowSpec) -> dict[int, str]:
    """For each task index, the name its field has once every later rename has happened."""
    names: dict[int, str] = {}
    for i, spec in enumerate(flow.task_specs):
        if hasattr(spec, "field"):
            names[i] = spec.field
        task = flow.tasks[i]
        if isinstance(task, MapTask):
            for old, target in task.map.items():
                new = target if isinstance(target, str) else (target.to or old)
                names = {j: (new if n == old else n) for j, n in names.items()}
    return names


def masked_fields(flow: FlowSpec) -> set[str]:
    names = final_names(flow)
    return {names[i] for i, s in enumerate(flow.task_specs) if isinstance(s, MaskSpec)}


def schema_for(flow: FlowSpec, output: pl.Schema) -> pa.DataFrameSchema:
    """Columns with the types the run produced, and the flow's validate tasks as checks."""
    names = final_names(flow)
    checks: dict[str, list[pa.Check]] = {}
    non_null: set[str] = set(flow.destination.key or [])
    for i, spec in enumerate(flow.task_specs):
        if isinstance(spec, ValidateSpec) and spec.on_failure != "fail":
            column = names[i]
            if spec.check == "non_null":
                non_null.add(column)
            elif column in output:
                checks.setdefault(column, []).append(_check(spec.check, output[column]))
    keys = flow.destination.key or []
    columns = {
        name: pa.Column(
            dtype,
            checks=checks.get(name, []),
            nullable=name not in non_null,
            unique=len(keys) == 1 and name in keys,
        )
        for name, dtype in output.items()
        if name not in (STATUS, REASON)
    }
    unique = keys if len(keys) > 1 else None
    return pa.DataFrameSchema(columns, strict=True, unique=unique, name=f"{flow.name}_records")


def _check(name: str, dtype: pl.DataType) -> pa.Check:
    def run(data: pa.PolarsData) -> pl.LazyFrame:
        column = pl.col(data.key)
        return data.lazyframe.select(CHECKS[name](column, dtype).fill_null(True))

    return pa.Check(run, name=name)


class SchemaCheck:
    """Validates batch after batch; examples name the record and column, never a hidden value."""

    def __init__(
        self,
        schema: pa.DataFrameSchema,
        hidden: set[str],
        id_field: str | None,
        max_examples: int = 5,
    ):
        self.schema = schema
        self.hidden = hidden
        self.id_field = id_field
        self.max_examples = max_examples
        self.report = CheckReport(passed=True)

    def add(self, batch: pl.DataFrame) -> None:
        report = self.report
        report.records_checked += batch.height
        try:
            self.schema.validate(batch, lazy=True)
        except SchemaErrors as exc:
            report.passed = False
            cases = exc.failure_cases
            report.failures += cases.height
            for (check,), group in cases.group_by("check"):
                name = str(check)
                report.failures_by_check[name] = (
                    report.failures_by_check.get(name, 0) + group.height
                )
            room = self.max_examples - len(report.examples)
            for row in cases.head(max(room, 0)).iter_rows(named=True):
                report.examples.append(self._example(batch, row))

    def _example(self, batch: pl.DataFrame, row: dict) -> dict[str, str]:
        index = row.get("index")
        record = "?"
        if self.id_field in batch.columns and index is not None:
            record = str(batch[self.id_field][int(index)])
        column = str(row.get("column"))
        value = "<masked>" if column in self.hidden else str(row["failure_case"])[:80]
        return {"record": record, "column": column, "check": str(row["check"]), "value": value}
