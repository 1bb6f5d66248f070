"""Asset keys, checks, jobs, schedules and sensors, snapshotted so a change shows up."""

import os
from pathlib import Path

import dagster as dg
import pytest

from flow_assets.connectors import SOURCE_CONNECTORS
from flow_assets.definitions import build_definitions
from flow_assets.environment import Settings
from tests.conftest import REPO

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.txt"


def describe(defs: dg.Definitions) -> str:
    graph = defs.resolve_asset_graph()
    lines = [f"asset {k.to_user_string()}" for k in sorted(graph.get_all_asset_keys())]
    lines += [
        f"check {c.asset_key.to_user_string()}:{c.name}" for c in sorted(graph.asset_check_keys)
    ]
    lines += [f"job {j.name}" for j in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name)]
    lines += [
        f"schedule {s.name} {s.cron_schedule} {s.execution_timezone} {s.default_status.value}"
        for s in sorted(defs.schedules or [], key=lambda s: s.name)
    ]
    lines += [
        f"sensor {s.name} {s.job_name} every {s.minimum_interval_seconds}s {s.default_status.value}"
        for s in sorted(defs.sensors or [], key=lambda s: s.name)
    ]
    nodes = [graph.get(k) for k in sorted(graph.get_all_asset_keys())]
    lines += [
        f"partitions {n.key.to_user_string()} {n.partitions_def} {n.backfill_policy}"
        for n in nodes
        if n.partitions_def is not None
    ]
    return "\n".join(lines) + "\n"


def test_definitions_snapshot():
    settings = Settings(environment="LOCAL", flows_dir=REPO / "flow_defs", data_dir=REPO / "data")
    actual = describe(build_definitions(settings))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(actual)
    assert actual == SNAPSHOT.read_text(), "run UPDATE_SNAPSHOTS=1 pytest to accept the change"


def test_assets_carry_kinds_tags_and_descriptions():
    settings = Settings(environment="LOCAL", flows_dir=REPO / "flow_defs", data_dir=REPO / "data")
    graph = build_definitions(settings).resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.kinds, key
        assert node.tags.get("flowbridge/connector") in SOURCE_CONNECTORS, key
        assert node.group_name == key.path[0]


def test_broken_flow_file_is_shown_and_the_rest_load(tmp_path):
    flows = tmp_path / "flow_defs"
    flows.mkdir()
    for path in (REPO / "flow_defs").glob("*.yaml"):
        (flows / path.name).write_text(path.read_text())
    (flows / "broken.yaml").write_text("source:\n  connection: salesforce_sandbox\n  objekt: X\n")
    defs = build_definitions(Settings(environment="LOCAL", flows_dir=flows, data_dir=tmp_path))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "invalid_flow_files/broken" in keys
    assert "salesforce_big_opportunities/records" in keys
    node = defs.resolve_asset_graph().get(dg.AssetKey(["invalid_flow_files", "broken"]))
    assert "unknown key 'objekt' (did you mean 'object'?)" in node.description
    with pytest.raises(dg.Failure, match="objekt"):
        dg.materialize([defs.get_assets_def(dg.AssetKey(["invalid_flow_files", "broken"]))])
