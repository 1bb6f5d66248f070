"""Shared fixtures: a real sandbox server on 127.0.0.1, a throwaway project and Dagster instance."""

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from flow_assets.definitions import build_definitions
from flow_assets.environment import Settings
from flow_assets.runner import QUIET, failure_messages
from flow_assets.sandbox import SalesforceSandbox

REPO = Path(__file__).resolve().parent.parent
CLIENT_ID, CLIENT_SECRET = "flowbridge-tests", "tests-secret"
SANDBOX_RECORDS = 3000


@pytest.fixture(scope="session")
def sandbox():
    with SalesforceSandbox(
        records=SANDBOX_RECORDS, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as sb:
        yield sb


@pytest.fixture
def sf(sandbox, monkeypatch):
    """The sandbox, with faults cleared and the connection's variables pointing at it."""
    sandbox.reset_faults()
    sandbox.reset_stats()
    monkeypatch.setenv("SALESFORCE_SANDBOX_URL", sandbox.url)
    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", CLIENT_SECRET)
    yield sandbox
    sandbox.reset_faults()


def copy_project(tmp_path: Path) -> Settings:
    """A copy of the repository's flow_defs, with its own data folder."""
    flows = tmp_path / "flow_defs"
    shutil.copytree(REPO / "flow_defs", flows)
    return Settings(environment="LOCAL", flows_dir=flows, data_dir=tmp_path / "data")


@pytest.fixture
def project(tmp_path, sf) -> Settings:
    return copy_project(tmp_path)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def run_flow(settings: Settings, instance: dg.DagsterInstance, flow: str, **tags: str):
    defs = build_definitions(settings)
    return defs.resolve_job_def(f"{flow}_job").execute_in_process(
        instance=instance, raise_on_error=False, tags=tags, run_config=QUIET
    )


def materialization(result, flow: str, name: str) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key == dg.AssetKey([flow, name]):
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {flow}/{name}")


def stored_cursor(instance: dg.DagsterInstance, settings: Settings, flow: str):
    """The high-water mark the instance holds for a flow file of the project."""
    from flow_assets.cursor import last_cursor
    from flow_assets.spec import load_flow_file

    return last_cursor(instance, load_flow_file(settings.flows_dir / f"{flow}.yaml"))


def failure_message(result) -> str:
    return "\n".join(failure_messages(result))


def live_opportunities(sandbox) -> "pl.DataFrame":
    """The sandbox's truth as a SOQL query sees it: deleted records only show in queryAll."""
    return sandbox.frame("Opportunity").filter(~pl.col("IsDeleted"))


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real moto server process on 127.0.0.1, driven through boto3 as AWS would be."""
    import socket
    import subprocess
    import sys
    import time

    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("moto_server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def aws(moto_endpoint, monkeypatch):
    """Fake credentials (so nothing can reach real AWS) and a freshly reset moto server."""
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    import boto3

    return lambda service: boto3.client(
        service, region_name="us-east-1", endpoint_url=moto_endpoint
    )


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1 (the Redshift stand-in)."""
    import glob
    import os
    import shlex
    import socket
    import subprocess
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.fail(
            "PostgreSQL is not installed: `make test` installs it (apt-get install postgresql)"
        )
    pg_bin = Path(bins[-1])
    root = Path(tempfile.mkdtemp(prefix="flowbridge-pg-"))
    root.chmod(0o755)
    data, sock = root / "data", root / "sock"
    data.mkdir()
    sock.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*args: str) -> None:
        command = " ".join(shlex.quote(a) for a in args)
        if os.geteuid() == 0:  # the server refuses to run as root
            shutil.chown(data, "postgres")
            shutil.chown(sock, "postgres")
            subprocess.run(
                ["su", "postgres", "-s", "/bin/sh", "-c", command], check=True, capture_output=True
            )
        else:
            subprocess.run(args, check=True, capture_output=True)

    run(
        str(pg_bin / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off"
    run(
        str(pg_bin / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(sock / "log"),
        "-w",
        "-o",
        options,
        "start",
    )
    try:
        yield {"host": "127.0.0.1", "port": port}
    finally:
        run(str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


EXAMPLE_BUCKET = "flowbridge-example-lake"  # flow_defs/salesforce_opportunities_to_s3.yaml's


@pytest.fixture
def s3_project(project, aws):
    """The example S3 flow's bucket and KMS key (alias/flowbridge) on moto: (project, s3, ARN)."""
    s3, kms = aws("s3"), aws("kms")
    s3.create_bucket(Bucket=EXAMPLE_BUCKET)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/flowbridge", TargetKeyId=key_id)
    return project, s3, kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]


def add_postgres_warehouse(project, postgres, name: str, bucket: str, **extra: str) -> None:
    """A redshift connection in the project's connections.yaml that runs on the test PostgreSQL."""
    lines = "".join(f"  {k}: {v}\n" for k, v in extra.items())
    connections = project.flows_dir / "connections.yaml"
    connections.write_text(
        connections.read_text()
        + f"""
{name}:
  connector: redshift
  mode: postgres
  host: {postgres["host"]}
  port: {postgres["port"]}
  user: postgres
  database: postgres
  staging_connection: aws_default
  staging_bucket: {bucket}
{lines}"""
    )


def sensor_tick(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, cursor=None):
    """One tick of a sensor as the daemon evaluates it, with the resources it requires (the
    daemon builds no others: their variables need not be set)."""
    sensor = defs.resolve_sensor_def(name)
    needed = {k: v for k, v in defs.resources.items() if k in sensor.required_resource_keys}
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=needed, definitions=defs
    ) as context:
        return sensor.evaluate_tick(context)
