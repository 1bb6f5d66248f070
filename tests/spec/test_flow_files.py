"""Bad flow and connection files: each gets a message naming the file, the field and the fix."""

from pathlib import Path

import pytest

from flow_assets.spec import FlowFileError, load_connections, load_flow_file, load_project

CONNECTIONS = """\
sf:
  connector: salesforce
  login_url: http://127.0.0.1:1
  client_id: ${SF_ID}
  client_secret: ${SF_SECRET}
"""

GOOD = """\
source:
  connection: sf
  object: Opportunity
  fields: [Id, Amount, StageName, SystemModstamp]
  incremental: {cursor_field: SystemModstamp}
tasks:
  - filter: {field: Amount, operator: greater_than, value: 10}
  - map: {Amount: amount}
  - validate: {field: amount, check: non_negative}
destination: {write: upsert, key: [Id]}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(tmp_path: Path, text: str) -> str:
    (tmp_path / "connections.yaml").write_text(CONNECTIONS)
    path = write(tmp_path, "bad_flow.yaml", text)
    with pytest.raises(FlowFileError) as info:
        load_flow_file(path, load_connections(tmp_path / "connections.yaml"))
    return str(info.value)


def test_good_flow_loads_with_name_from_file(tmp_path):
    (tmp_path / "connections.yaml").write_text(CONNECTIONS)
    flow = load_flow_file(
        write(tmp_path, "opps.yaml", GOOD), load_connections(tmp_path / "connections.yaml")
    )
    assert flow.name == "opps"
    assert [type(t).__name__ for t in flow.tasks] == ["FilterTask", "MapTask", "ValidateTask"]


def test_malformed_yaml_names_line_and_column(tmp_path):
    message = problems_of(tmp_path, "source:\n  object: [Opportunity\n  fields: x\n")
    assert "bad_flow.yaml" in message
    assert "not valid YAML at line" in message


def test_unknown_key_suggests_the_right_one(tmp_path):
    message = problems_of(tmp_path, GOOD.replace("  fields:", "  feilds:"))
    assert "bad_flow.yaml: source: unknown key 'feilds' (did you mean 'fields'?)" in message


def test_unknown_task_and_operator(tmp_path):
    text = GOOD.replace("- filter:", "- filtr:")
    assert "tasks[0]: unknown task 'filtr' (did you mean 'filter'?)" in problems_of(tmp_path, text)
    text = GOOD.replace("greater_than", "greater_then")
    message = problems_of(tmp_path, text)
    assert "tasks[0].filter.operator: 'greater_then' is not one of" in message
    assert "(did you mean 'greater_than'?)" in message


def test_field_used_before_it_exists(tmp_path):
    message = problems_of(tmp_path, GOOD.replace("{field: amount, check", "{field: Amont, check"))
    assert "tasks[2].validate.field: 'Amont' is not a field at this step" in message
    assert "did you mean 'amount'?" in message


def test_unknown_connection(tmp_path):
    message = problems_of(tmp_path, GOOD.replace("connection: sf", "connection: sff"))
    assert (
        "source.connection: 'sff' is not defined in connections.yaml (did you mean 'sf'?)"
        in message
    )


def test_literal_secret_in_flow_file(tmp_path):
    message = problems_of(
        tmp_path, GOOD.replace("  object:", "  client_secret: hunter2\n  object:")
    )
    assert "source.client_secret: 'client_secret' is a secret" in message
    assert "hunter2" not in message


def test_literal_secret_in_connections(tmp_path):
    path = write(tmp_path, "connections.yaml", CONNECTIONS.replace("${SF_SECRET}", "hunter2"))
    with pytest.raises(FlowFileError) as info:
        load_connections(path)
    assert "connections.yaml: sf.client_secret: 'client_secret' is a secret" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_upsert_without_key_and_bad_between(tmp_path):
    message = problems_of(tmp_path, GOOD.replace("key: [Id]", "key: null"))
    assert "destination: write 'upsert' needs key" in message
    text = GOOD.replace("operator: greater_than, value: 10", "operator: between, value: 10")
    assert "operator 'between' needs value: [low, high]" in problems_of(tmp_path, text)


def test_cursor_field_must_be_selected(tmp_path):
    message = problems_of(
        tmp_path, GOOD.replace("cursor_field: SystemModstamp", "cursor_field: LastModifiedDate")
    )
    assert "source.incremental.cursor_field: 'LastModifiedDate' is not in source.fields" in message


def test_one_broken_file_does_not_stop_the_others(tmp_path):
    (tmp_path / "connections.yaml").write_text(CONNECTIONS)
    write(tmp_path, "good.yaml", GOOD)
    write(tmp_path, "broken.yaml", "source: [")
    project = load_project(tmp_path)
    assert list(project.flows) == ["good"]
    assert [p.name for p in project.errors] == ["broken.yaml"]


def test_schedule_status_on_and_off_unquoted():
    """YAML reads `status: off` as false; the flow file means the word."""
    import yaml

    from flow_assets.spec.models import Schedule

    for text, status in (("status: off", "off"), ("status: on", "on"), ("status: 'on'", "on")):
        loaded = yaml.safe_load(f"{{schedule: 'rate(1 day)', {text}}}")
        assert Schedule.model_validate(loaded).status == status


TO_SALESFORCE = """\
source: {connection: sf, object: Opportunity, fields: [External_Id__c, Name, Amount]}
destination:
  connector: salesforce
  write: upsert
  key: [External_Id__c]
  salesforce: {connection: sf, object: Opportunity, external_id_field: External_Id__c%s}
"""


@pytest.mark.parametrize(
    ("extra", "api", "threshold"),
    [("", "automatic", 1000), (", api: bulk", "bulk", 1000), (", api: rest", "rest", 1000),
     (", bulk_threshold: 5000", "automatic", 5000)],
)  # fmt: skip
def test_the_salesforce_api_setting_defaults_to_appflows_automatic(tmp_path, extra, api, threshold):
    (tmp_path / "connections.yaml").write_text(CONNECTIONS)
    path = write(tmp_path, "to_sf.yaml", TO_SALESFORCE % extra)
    settings = load_flow_file(path, load_connections(tmp_path / "connections.yaml")).destination
    assert (settings.salesforce.api, settings.salesforce.bulk_threshold) == (api, threshold)


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (", api: fast", "destination.salesforce.api: 'fast' is not one of: automatic, rest, bulk"),
        (", bulk_threshold: 0", "destination.salesforce.bulk_threshold: Input should be greater"),
        (", api: rest, bulk_threshold: 500",
         "destination.salesforce: bulk_threshold is for api automatic; api rest always uses REST"),
        (", api: bulk, bulk_threshold: 10", "api bulk always uses Bulk API 2.0: drop one"),
    ],
)  # fmt: skip
def test_bad_salesforce_api_settings(tmp_path, extra, error):
    message = problems_of(tmp_path, TO_SALESFORCE % extra)
    assert "bad_flow.yaml" in message and error in message
