"""`flowbridge run` on demand: the run's URL in the UI (its instance is DAGSTER_HOME's), and
`--partition` for partitioned flows, with clear errors for a wrong or missing key."""

import re

import pytest

from flow_assets.cli import main
from flow_assets.runner import instance

PARTITIONED = "salesforce_opportunities_by_day"


@pytest.fixture
def home(project, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWBRIDGE_FLOWS_DIR", str(project.flows_dir))
    monkeypatch.setenv("FLOWBRIDGE_DATA_DIR", str(project.data_dir))
    monkeypatch.delenv("DAGSTER_WEBSERVER_URL", raising=False)
    return tmp_path / "home"


def run_id(out: str) -> str:
    found = re.search(r"^flow \S+: run (\S+) succeeded$", out, re.M)
    assert found, out
    return found[1]


def test_run_prints_its_url_in_the_ui(home, capsys, monkeypatch):
    assert main(["run", "salesforce_big_opportunities"]) == 0
    out = capsys.readouterr().out
    run = run_id(out)
    assert f"  run: http://127.0.0.1:3000/runs/{run}\n" in out
    stored = instance()  # DAGSTER_HOME's: what `make ui` on that home shows
    assert stored.root_directory == str(home) and stored.get_run_by_id(run) is not None

    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", "https://dagster.example.com/")
    assert main(["run", "salesforce_big_opportunities"]) == 0
    out = capsys.readouterr().out
    assert f"  run: https://dagster.example.com/runs/{run_id(out)}\n" in out


def test_run_one_partition_or_a_range(home, capsys, sf):
    assert main(["run", PARTITIONED, "--partition", "2025-06-02"]) == 0
    out = capsys.readouterr().out
    assert "records read 4, loaded 4" in out and "cursor (high-water mark)" not in out

    assert main(["run", PARTITIONED, "--partition", "2025-06-02...2025-06-08"]) == 0
    assert "records read 29, loaded 29" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            [PARTITIONED, "--partition", "2023-12-31"],
            f"flow {PARTITIONED}: '2023-12-31' is not a partition of flow {PARTITIONED}, whose "
            "partitions run from 2024-01-01 to ",
        ),
        (
            [PARTITIONED],
            f"flow {PARTITIONED}: flow {PARTITIONED} is partitioned: name a partition with "
            "--partition KEY (the latest is ",
        ),
        (
            ["salesforce_big_opportunities", "--partition", "2025-06-02"],
            "flow salesforce_big_opportunities has no partitions; run it without --partition",
        ),
    ],
    ids=["outside-the-range", "missing", "not-partitioned"],
)
def test_partition_errors(home, capsys, args, expected):
    assert main(["run", *args]) == 2
    captured = capsys.readouterr()
    assert expected in captured.err, captured.err
    assert captured.out == ""  # nothing ran


def test_run_reads_the_projects_env_file_and_the_environment_wins(home, capsys, project, sf,
                                                                  monkeypatch):  # fmt: skip
    """`.env` beside flow_defs/ (where `flowbridge oauth` stores refresh tokens) is read as
    `dagster dev` reads it; a variable already set is not replaced."""
    from tests.conftest import CLIENT_SECRET

    env = project.flows_dir.parent / ".env"
    monkeypatch.delenv("SALESFORCE_SANDBOX_CLIENT_SECRET")
    env.write_text(f"SALESFORCE_SANDBOX_CLIENT_SECRET={CLIENT_SECRET}\n")
    assert main(["run", "salesforce_big_opportunities"]) == 0
    capsys.readouterr()

    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", CLIENT_SECRET)
    env.write_text("SALESFORCE_SANDBOX_CLIENT_SECRET=not-the-secret\n")
    assert main(["run", "salesforce_big_opportunities"]) == 0
