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
def dagster_dev(tmp_path, sf):  # sf: the sandbox's address and credentials in the environment
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


LAUNCH = """mutation($selector: JobOrPipelineSelector!) {
  launchRun(executionParams: {selector: $selector}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
STATUS = """query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"""
MATERIALIZED = """query($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) { ... on Asset {
    assetMaterializations(limit: 1) { runId metadataEntries {
      label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } }
  } }
}"""


def graphql(url: str, query: str, **variables) -> dict:
    answer = requests.post(url, json={"query": query, "variables": variables}, timeout=60)
    answer.raise_for_status()
    body = answer.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def test_a_flow_launched_through_graphql_succeeds_with_its_counts(dagster_dev, sf):
    flow = "salesforce_big_opportunities"
    repos = graphql(dagster_dev, "{ repositoriesOrError { ... on RepositoryConnection { "
                    "nodes { name location { name } } } } }")["repositoriesOrError"]["nodes"]  # fmt: skip
    selector = {"repositoryLocationName": repos[0]["location"]["name"],
                "repositoryName": repos[0]["name"], "jobName": f"{flow}_job"}  # fmt: skip
    launched = graphql(dagster_dev, LAUNCH, selector=selector)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline, status = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        status = graphql(dagster_dev, STATUS, runId=run_id)["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"
    (mat,) = graphql(dagster_dev, MATERIALIZED, path=[flow, "records"])["assetOrError"][
        "assetMaterializations"
    ]
    assert mat["runId"] == run_id
    meta = {e["label"]: e.get("intValue", e.get("text")) for e in mat["metadataEntries"]}
    assert meta["records_read"] == (
        meta["records_loaded"] + meta["records_filtered"] + meta["records_rejected"]
    )
    assert meta["records_read"] > 0 and meta["masked_fields"] == "Email__c"
