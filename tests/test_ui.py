"""`dagster dev` on 127.0.0.1 loads workspace.yaml and shows each flow's group, check and schedule."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO

QUERY = """{
  assetNodes { assetKey { path } groupName assetChecksOrError { ... on AssetChecks { checks { name } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { schedules { name cronSchedule } } } }
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path):
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "FLOWBRIDGE_DATA_DIR": str(tmp_path / "data")}
    dagster = Path(sys.executable).parent / "dagster"
    process = subprocess.Popen(
        [str(dagster), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.post(url, json={"query": "{ version }"}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail("dagster dev did not come up within 90 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_ui_shows_group_check_and_schedule(dagster_dev):
    data = requests.post(dagster_dev, json={"query": QUERY}, timeout=30).json()["data"]
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    flow = "salesforce_big_opportunities"
    assert {f"{flow}/extracted", f"{flow}/records", f"{flow}/rejected"} <= set(nodes)
    assert nodes[f"{flow}/records"]["groupName"] == flow
    assert nodes[f"{flow}/records"]["assetChecksOrError"]["checks"] == [{"name": "schema"}]
    schedules = [s for repo in data["repositoriesOrError"]["nodes"] for s in repo["schedules"]]
    assert {"name": f"{flow}_schedule", "cronSchedule": "0 0 * * *"} in schedules
