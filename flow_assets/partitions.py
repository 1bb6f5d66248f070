"""A flow's `partitions:` as Dagster time-window partitions on its cursor field, with the
backfill policy, and what a run's partition (or partition range) is."""

from __future__ import annotations

import dagster as dg

from flow_assets.spec.models import FlowSpec

RANGE = "..."  # FIRST...LAST names a range of partitions
# The tags Dagster puts on a run that materializes a partition range (single_run backfills).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def partitions_def(flow: FlowSpec) -> dg.TimeWindowPartitionsDefinition | None:
    spec = flow.partitions
    if spec is None:
        return None
    if spec.by == "day":
        return dg.DailyPartitionsDefinition(spec.start.strftime("%Y-%m-%d"), timezone="UTC")
    return dg.HourlyPartitionsDefinition(spec.start.strftime("%Y-%m-%d-%H:%M"), timezone="UTC")


def backfill_policy(flow: FlowSpec) -> dg.BackfillPolicy | None:
    """single_run: a backfill is one run pulling the whole range; per_partition: one run each."""
    if flow.partitions is None:
        return None
    if flow.partitions.backfill == "single_run":
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


def run_partitions(context: dg.AssetExecutionContext) -> dg.PartitionKeyRange | None:
    """The run's partition as a range of one, its range (single_run backfill), or None."""
    if context.has_partition_key or context.has_partition_key_range:
        return context.partition_key_range
    return None


def check_partition_key(
    flow: str, definition: dg.PartitionsDefinition | None, key: str | None
) -> str | None:
    """Why `key` (a key, or FIRST...LAST) names no partition of the flow; None when it does.
    A partitioned flow needs one: Dagster runs its assets partition by partition."""
    if definition is None:
        return f"flow {flow} has no partitions; run it without --partition" if key else None
    first, last = definition.get_first_partition_key(), definition.get_last_partition_key()
    if key is None:
        return (
            f"flow {flow} is partitioned: name a partition with --partition KEY (the latest "
            f"is {last}), or a range with --partition FIRST{RANGE}LAST"
        )
    keys = key.split(RANGE, 1)
    bad = [k for k in keys if not definition.has_partition_key(k)]
    if bad:
        return (
            f"'{bad[0]}' is not a partition of flow {flow}, whose partitions run from {first} "
            f"to {last} (a range is FIRST{RANGE}LAST)"
        )
    if len(keys) == 2 and keys[0] != keys[1]:
        ordered = definition.get_partition_keys_in_range(dg.PartitionKeyRange(*keys))
        if not ordered:
            return f"'{key}': the range's first partition comes after its last"
    return None


def partition_run(key: str) -> dict[str, object]:
    """execute_in_process arguments for a partition key, or for a range FIRST...LAST (run as
    a single_run backfill runs it, with Dagster's range tags)."""
    if RANGE not in key:
        return {"partition_key": key}
    first, last = key.split(RANGE, 1)
    return {"tags": {RANGE_START_TAG: first, RANGE_END_TAG: last}}
