"""How a flow pulls, in the flow file: lookback, start: all, include_deleted, partitions; and
the combinations that would deliver records twice, refused when the file loads."""

from datetime import timedelta

import pytest

from flow_assets.spec import FlowFileError, load_flow_file
from flow_assets.spec.appflow import import_appflow
from flow_assets.spec.appflow_export import export_file
from tests.conftest import REPO

FLOW = """\
source:
  connection: sf
  object: Opportunity
  fields: [Id, Amount, SystemModstamp]
  incremental: {cursor_field: SystemModstamp, start: all, lookback: 2 hours}
  include_deleted: true
partitions: {by: day, start: "2024-01-01", backfill: single_run}
destination: {write: upsert, key: [Id]}
"""


def load(tmp_path, text: str):
    path = tmp_path / "pulls.yaml"
    path.write_text(text)
    return load_flow_file(path)


def problems(tmp_path, text: str) -> str:
    with pytest.raises(FlowFileError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_the_options_load(tmp_path):
    flow = load(tmp_path, FLOW)
    incremental = flow.source.incremental
    assert incremental.start == "all" and incremental.lookback == timedelta(hours=2)
    assert flow.source.include_deleted
    assert (flow.partitions.by, flow.partitions.backfill) == ("day", "single_run")
    for text, expected in [("30 minutes", 30 * 60), ("1 day", 86_400), ("3 Hours", 3 * 3600)]:
        flow = load(tmp_path, FLOW.replace("2 hours", text))
        assert flow.source.incremental.lookback == timedelta(seconds=expected)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda t: t.replace("{write: upsert, key: [Id]}", "{write: append}"),
            "source.incremental.lookback: each run re-reads the lookback window, whose records "
            "the destination already has: with destination.write append they would arrive "
            "twice; write: upsert with key: [...], or remove lookback",
        ),
        (
            lambda t: t.replace("2 hours", "2 fortnights"),
            "source.incremental.lookback: '2 fortnights' is not a duration such as "
            "'30 minutes', '2 hours', '1 day'",
        ),
        (
            lambda t: t.replace("start: all", "start: everything"),
            "source.incremental.start: 'everything' is neither a timestamp such as "
            "2024-01-01T00:00:00Z nor all",
        ),
        (
            lambda t: t.replace('"2024-01-01"', '"2024-01-01T05:00:00"'),
            "partitions: start must be the start of a day (2024-01-01)",
        ),
        (
            lambda t: t.replace('"2024-01-01"', '"2024-01-01T00:00:00+02:00"'),  # 22:00 UTC
            "partitions: start must be the start of a day (2024-01-01)",
        ),
        (
            lambda t: t.replace("by: day", "by: week"),
            "partitions.by: 'week' is not one of: day, hour",
        ),
        (
            lambda t: t.replace(
                "  incremental: {cursor_field: SystemModstamp, start: all, lookback: 2 hours}\n",
                "",
            ),
            "partitions: partitions split the source on its cursor field: add "
            "source.incremental: {cursor_field: ...}",
        ),
        (
            lambda t: t.replace("{write: upsert, key: [Id]}", "{write: overwrite}").replace(
                ", lookback: 2 hours", ""
            ),
            "destination.write: overwrite with partitions: each partition's run would replace "
            "the records of the others",
        ),
        (
            lambda t: t + "trigger: {event: source_changes}\n",
            "trigger: a partitioned flow runs partition by partition: a schedule runs the latest "
            "closed window each tick, but a change event names no partition",
        ),
    ],
    ids=[
        "lookback-append",
        "bad-lookback",
        "bad-start",
        "partition-start-mid-day",
        "partition-start-not-utc-midnight",
        "partition-unit",
        "partitions-without-cursor",
        "partitions-overwrite",
        "partitions-event",
    ],
)
def test_bad_pull_options(tmp_path, edit, expected):
    message = problems(tmp_path, edit(FLOW))
    assert f"pulls.yaml: {expected}" in message, message


def test_include_deleted_goes_to_appflow_and_back(tmp_path, monkeypatch):
    monkeypatch.delenv("REDSHIFT_STAGING_BUCKET", raising=False)
    flows = REPO / "flow_defs"
    (tmp_path / "connections.yaml").write_text((flows / "connections.yaml").read_text())
    path = tmp_path / "to_redshift.yaml"
    text = (flows / "salesforce_opportunities_to_redshift.yaml").read_text()
    path.write_text(text.replace("  incremental:", "  include_deleted: true\n  incremental:"))
    exported = export_file(path)
    props = exported.result["sourceFlowConfig"]["sourceConnectorProperties"]["Salesforce"]
    assert props["includeDeletedRecords"] is True
    assert "source.incremental.start: all: AppFlow's first run pulls the past 30 days" in (
        " | ".join(exported.not_carried)
    )
    back = import_appflow(exported.result, "exported.json")
    assert back.result["source"]["include_deleted"] is True
    assert not [line for line in back.not_carried if "includeDeletedRecords" in line]
