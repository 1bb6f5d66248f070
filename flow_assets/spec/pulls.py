"""How a flow pulls (lookback, partitions) checked against how it writes: no duplicates."""

from __future__ import annotations

from flow_assets.spec.errors import Problem, ProblemList
from flow_assets.spec.models import Event, FlowSpec


def pull_problems(flow: FlowSpec, file: str) -> list[Problem]:
    problems = ProblemList()
    incremental, dest = flow.source.incremental, flow.destination
    if incremental and incremental.lookback and dest.write == "append":
        problems.add(
            file, "source.incremental.lookback",
            "each run re-reads the lookback window, whose records the destination already "
            "has: with destination.write append they would arrive twice; write: upsert with "
            "key: [...], or remove lookback",
        )  # fmt: skip
    if flow.partitions is not None:
        if incremental is None:
            problems.add(
                file, "partitions",
                "partitions split the source on its cursor field: add "
                "source.incremental: {cursor_field: ...}",
            )  # fmt: skip
        if isinstance(flow.trigger, Event):
            problems.add(
                file, "trigger",
                "a partitioned flow runs partition by partition: a schedule runs the latest "
                "closed window each tick, but a change event names no partition; use a "
                "schedule or on_demand, or remove partitions",
            )  # fmt: skip
        if dest.write == "overwrite":
            problems.add(
                file, "destination.write",
                "overwrite with partitions: each partition's run would replace the records of "
                "the others; write: upsert with key: [...]",
            )  # fmt: skip
    return problems
