"""Where a staged dataset lives: `<flow>/<asset>`, or `<flow>/partitions/<key>/<asset>` in a
partitioned run, so parallel partition runs never share staged files (and an unpartitioned run,
which replaces `<flow>/<asset>` whole, never touches them)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

PARTITIONS = "partitions"


def partition_label(keys: dg.PartitionKeyRange) -> str:
    """A partition's key, or `<first>...<last>` for a range run in one go (single_run)."""
    return keys.start if keys.start == keys.end else f"{keys.start}...{keys.end}"


def staging_parts(
    asset_path: Sequence[str], keys: dg.PartitionKeyRange | None = None
) -> tuple[str, ...]:
    *flow, name = asset_path
    if keys is None:
        return (*flow, name)
    return (*flow, PARTITIONS, partition_label(keys), name)


def io_parts(context: dg.OutputContext | dg.InputContext) -> tuple[str, ...]:
    keys = context.asset_partition_key_range if context.has_asset_partitions else None
    return staging_parts(context.asset_key.path, keys)


def latest_materialization(context: dg.InputContext) -> dg.AssetMaterialization | None:
    """The upstream asset's latest materialization: of this run's first partition, if any."""
    wanted: dg.AssetKey | dg.AssetRecordsFilter = context.asset_key
    if context.has_asset_partitions:
        first = context.asset_partition_key_range.start
        wanted = dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[first])
    records = context.instance.fetch_materializations(wanted, limit=1).records
    return records[0].asset_materialization if records else None
