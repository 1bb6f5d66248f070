"""Every example flow that reads a bundled sandbox into the lake runs as shipped: connections.yaml's
`*_sandbox` connections, with the credentials the Makefile exports (what `make ui` uses), reach
the sandboxes `flowbridge sandbox` serves, and each flow loads its records with the counts
adding up."""

import re

import dagster as dg
import pytest

from flow_assets.connectors import connection_resource
from flow_assets.definitions import build_definitions
from flow_assets.runner import QUIET
from flow_assets.sandbox.serve import SANDBOXES, start_all, url_environment
from flow_assets.spec import load_flow_file
from flow_assets.spec.loading import load_connections
from tests.conftest import REPO, copy_project, materialization, run_flow

FLOWS = REPO / "flow_defs"
CONNECTIONS = load_connections(FLOWS / "connections.yaml")


def makefile_exports() -> dict[str, str]:
    """The sandbox credentials the Makefile exports (`export NAME ?= value`)."""
    text = (REPO / "Makefile").read_text()
    found = re.findall(r"^export (\w+_SANDBOX_\w+) \?= (\S+)$", text, re.MULTILINE)
    return {name: value for name, value in found if "$(" not in value}  # not make's own


def sandbox_flows() -> list[str]:
    flows = []
    for path in sorted(FLOWS.glob("*.yaml")):
        if path.name == "connections.yaml":
            continue
        flow = load_flow_file(path)
        if flow.source.connection.endswith("_sandbox") and flow.destination.connector == "lake":
            flows.append(flow.name)
    return flows


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory):
    started = start_all(0, 400, 7)
    # Slack's refresh tokens are single-use: every run of the module shares one token store.
    store = tmp_path_factory.mktemp("slack") / "slack_tokens.json"
    try:
        yield url_environment(started) | {"SLACK_SANDBOX_TOKEN_STORE": str(store)}
    finally:
        for sandbox in started.values():
            sandbox.stop()


@pytest.fixture
def env(sandboxes, monkeypatch):
    for name, value in (makefile_exports() | sandboxes).items():
        monkeypatch.setenv(name, value)


def test_every_sandbox_has_a_connection_and_an_example_flow():
    served = {c.connector for n, c in CONNECTIONS.items() if n.endswith("_sandbox")}
    assert len(served) == len(SANDBOXES)
    read = {CONNECTIONS[load_flow_file(FLOWS / f"{f}.yaml").source.connection].connector
            for f in sandbox_flows()}  # fmt: skip
    assert read == served


@pytest.mark.parametrize("name", sorted(n for n in CONNECTIONS if n.endswith("_sandbox")))
def test_each_sandbox_connection_checks_with_the_makefiles_credentials(env, name):
    resource = connection_resource(name, CONNECTIONS[name], FLOWS / "connections.yaml")
    with dg.build_resources({"c": resource}) as resources:
        resources.c.open().check()


@pytest.mark.parametrize("flow", sandbox_flows())
def test_each_example_flow_loads_its_records(env, tmp_path, flow):
    project = copy_project(tmp_path)
    spec = load_flow_file(FLOWS / f"{flow}.yaml")
    with dg.instance_for_test() as instance:
        if spec.partitions is None:
            result = run_flow(project, instance, flow)
        else:  # its first partition
            job = build_definitions(project).resolve_job_def(f"{flow}_job")
            first = job.partitions_def.get_first_partition_key()
            result = job.execute_in_process(instance=instance, raise_on_error=False,
                                            partition_key=first, run_config=QUIET)  # fmt: skip
        assert result.success, flow
        meta = materialization(result, flow, "records")
    assert meta["records_loaded"] > 0 or spec.partitions is not None  # a day may have none
    assert meta["records_read"] == (
        meta["records_loaded"] + meta["records_filtered"] + meta["records_rejected"]
    )
