"""`flowbridge validate`: exit 0 on the repository's flows, non-zero with a clear message on each
kind of bad input, offline and against the sandbox."""

import os

import pytest

from flow_assets.cli import main
from tests.conftest import REPO

GOOD = (REPO / "flow_defs" / "salesforce_big_opportunities.yaml").read_text()


@pytest.fixture(autouse=True)
def only_salesforce_is_served(monkeypatch):
    """These tests start the Salesforce sandbox alone: the other sandbox connections (whose
    secrets `make` exports) are left unset, so validate notes them instead of dialling them."""
    for name in os.environ:
        if "_SANDBOX_" in name and not name.startswith("SALESFORCE_"):
            monkeypatch.delenv(name)


def validate(project, capsys, *extra: str) -> tuple[int, str]:
    code = main(["validate", str(project.flows_dir), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_repository_flows_validate(project, capsys):
    code, output = validate(project, capsys)
    assert code == 0, output
    assert "ok: salesforce_big_opportunities" in output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("  object:", "\tobject:"), "not valid YAML at line 6, column 1"),
        (
            lambda t: t.replace("  object:", "  objekt:"),
            "source: unknown key 'objekt' (did you mean 'object'?)",
        ),
        (
            lambda t: t.replace("object: Opportunity", "object: Opportunty"),
            "source.object: 'Opportunty' is not an object of connection 'salesforce_sandbox' (did you mean 'Opportunity'?)",
        ),
        (
            lambda t: t.replace("fields: [Id, Name,", "fields: [Id, Nmae,"),
            "source.fields: 'Nmae' is not a field of Opportunity (did you mean 'Name'?)",
        ),
        (
            lambda t: t.replace("connector: lake", "connector: lakehouse"),
            "destination.connector: unknown destination 'lakehouse' (did you mean 'lake'?)",
        ),
        (
            lambda t: t.replace('"rate(1 day)"', '"rate(7 minutes)"'),
            "trigger.schedule: 'rate(7 minutes)': minutes must divide 60",
        ),
    ],
    ids=[
        "malformed-yaml",
        "unknown-key",
        "unknown-object",
        "unknown-field",
        "unknown-destination",
        "bad-rate",
    ],
)
def test_bad_flow_file(project, capsys, edit, expected):
    path = project.flows_dir / "salesforce_big_opportunities.yaml"
    path.write_text(edit(GOOD))
    code, output = validate(project, capsys)
    assert code == 1
    assert f"error: {path}: {expected}" in output or expected in output, output
    assert "salesforce_big_opportunities.yaml" in output


def test_unknown_connector_and_literal_secret(project, capsys):
    connections = project.flows_dir / "connections.yaml"
    text = connections.read_text()
    connections.write_text(text.replace("connector: salesforce", "connector: salesforse"))
    code, output = validate(project, capsys, "--offline")
    assert code == 1
    assert (
        "salesforce_sandbox.connector: unknown connector 'salesforse' (did you mean 'salesforce'?)"
        in output
    )

    connections.write_text(text.replace("${SALESFORCE_SANDBOX_CLIENT_SECRET}", "s3cr3t-value"))
    code, output = validate(project, capsys, "--offline")
    assert code == 1
    assert "salesforce_sandbox.client_secret: 'client_secret' is a secret" in output
    assert "s3cr3t-value" not in output


def test_wrong_credentials(project, capsys, monkeypatch):
    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", "not-the-secret")
    code, output = validate(project, capsys)
    assert code == 1
    assert "authentication failed" in output and "invalid_client" in output
    assert "not-the-secret" not in output


def test_malformed_api_answer(project, capsys, sf):
    sf.inject("malformed", count=2, path_contains="/describe")
    code, output = validate(project, capsys)
    assert code == 1
    assert "salesforce_big_opportunities.yaml: source: " in output, output
    assert "is not valid JSON" in output, output


def test_unreachable_source_is_a_note_not_an_error(project, capsys, monkeypatch):
    monkeypatch.setenv("SALESFORCE_SANDBOX_URL", "http://127.0.0.1:9")
    code, output = validate(project, capsys)
    assert code == 0, output
    assert "not checked against the source (unreachable" in output


def test_run_prints_counts_and_fails_clearly(project, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWBRIDGE_FLOWS_DIR", str(project.flows_dir))
    monkeypatch.setenv("FLOWBRIDGE_DATA_DIR", str(project.data_dir))
    assert main(["run", "salesforce_big_opportunities"]) == 0
    out = capsys.readouterr().out
    assert "flow salesforce_big_opportunities: run" in out and "succeeded" in out
    assert "records read " in out and "cursor (high-water mark): 2025-" in out

    assert main(["run", "salesforce_big_opportunity"]) == 2
    assert "no flow named 'salesforce_big_opportunity'" in capsys.readouterr().err

    monkeypatch.setenv("SALESFORCE_SANDBOX_CLIENT_SECRET", "nope")
    assert main(["run", "salesforce_big_opportunities", "--full-refresh"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "authentication failed" in out and "nope" not in out


def test_unset_secret_variable_is_a_short_note(project, capsys, monkeypatch):
    monkeypatch.delenv("SALESFORCE_SANDBOX_CLIENT_SECRET")
    code, output = validate(project, capsys)
    assert code == 0
    assert "environment variable(s) SALESFORCE_SANDBOX_CLIENT_SECRET not set" in output
    assert "Traceback" not in output and "Stack Trace" not in output
