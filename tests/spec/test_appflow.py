"""`flowbridge import-appflow` / `export-appflow`: AppFlow's documented JSON shapes in, flow files
that load out, everything that cannot go across reported by its path, and back again."""

import copy
import json
from pathlib import Path

import botocore.session
import botocore.validate
import pytest

from flow_assets.cli import main
from flow_assets.spec import FlowFileError, load_connections, load_flow_file
from flow_assets.spec.appflow import import_appflow, known_connectors, to_yaml
from flow_assets.spec.appflow_export import export_file
from flow_assets.spec.appflow_model import check, request_shape
from flow_assets.spec.models import Destination, FlowSpec
from tests.conftest import REPO

FIXTURES = Path(__file__).parent / "appflow"
EXAMPLE = REPO / "flow_defs" / "salesforce_opportunities_to_s3.yaml"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def imported(name: str, raw: dict | None = None):
    """The fixture imported as the CLI would beside FIXTURES/connections.yaml, which says what
    its CustomConnector profiles reach."""
    raw = fixture(name) if raw is None else raw
    return import_appflow(raw, f"{name}.json", known_connectors(FIXTURES))


def reported(conversion, path: str) -> str:
    """The one not-carried-over line about path (fails the test if there is none)."""
    lines = [line for line in conversion.not_carried if line.startswith(f"{path}: ")]
    assert len(lines) == 1, f"{path} not reported once in {conversion.not_carried}"
    return lines[0]


def problems(name: str, raw: dict) -> str:
    with pytest.raises(FlowFileError) as info:
        import_appflow(raw, f"{name}.json")
    return str(info.value)


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.json")))
def test_every_fixture_imports_to_a_flow_file_that_loads(tmp_path, name):
    conversion = imported(name)
    path = tmp_path / f"{conversion.result['name']}.yaml"
    path.write_text(to_yaml(conversion, f"{name}.json"))
    flow = load_flow_file(path)  # FlowSpec, then field names through every task
    assert flow == FlowSpec.model_validate(conversion.result)  # the YAML says what the dict says
    text = path.read_text()
    comments = [line for line in text.splitlines() if line.startswith("#   - ")]
    assert comments == [f"#   - {line}" for line in conversion.not_carried]


def test_salesforce_to_s3_with_filters_and_masks():
    conversion = imported("salesforce_to_s3_masked")
    flow = conversion.result
    assert flow["name"] == "salesforce_opportunities_masked"
    assert flow["source"] == {
        "connector": "salesforce",
        "connection": "my_salesforce_connection",
        "object": "Opportunity",
        # Description is projected but mapped nowhere: AppFlow never writes it.
        "fields": ["Id", "Name", "Amount", "StageName", "CloseDate", "Email__c", "Phone__c"],
    }
    low, high = flow["tasks"][2]["filter"]["value"]
    assert (str(low), str(high)) == ("2024-01-01", "2024-12-31")  # epoch milliseconds, as dates
    assert flow["tasks"][:2] + flow["tasks"][3:] == [
        {"filter": {"field": "Amount", "operator": "greater_than", "value": 10000}},
        {"filter": {"field": "StageName", "operator": "in", "value": ["Negotiation/Review", "Closed Won"]}},
        {"map": {"Amount": "amount_usd", "StageName": "stage", "CloseDate": "close_date", "Phone__c": "phone"}},
        {"mask": {"field": "Email__c", "how": "all"}},
        {"mask": {"field": "phone", "how": "first_n", "n": 6, "char": "#"}},
        {"validate": {"field": "amount_usd", "check": "non_negative", "on_failure": "drop"}},
        {"truncate": {"field": "Name", "length": 80}},
    ]  # fmt: skip
    assert flow["destination"] == {
        "connector": "s3",
        "write": "append",
        "s3": {
            "connection": "aws_default",
            "bucket": "flowbridge-example-lake",
            "prefix": "salesforce/opportunities",
            "format": "parquet",
            "partitioning": ["year", "month", "day", "run_id"],
            "encryption": {
                "type": "sse-kms",
                "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            },
        },
    }
    assert flow["trigger"] == "on_demand"
    assert "CONTAINS with a list of values" in reported(conversion, "tasks[4]")
    assert "includeDeletedRecords" in " ".join(conversion.not_carried)
    reported(conversion, "tags")
    assert any("'Salesforce-Opportunities-Masked' is named" in n for n in conversion.notes)


def test_incremental_scheduled_flow():
    conversion = imported("incremental_scheduled")
    flow = conversion.result
    assert flow["source"]["incremental"] == {
        "cursor_field": "LastModifiedDate",
        "start": "2024-01-01T00:00:00Z",  # firstExecutionFrom, epoch seconds
    }
    assert "fields" not in flow["source"]  # Map_all: every field but the excluded
    assert flow["trigger"] == {
        "schedule": "rate(1 day)",
        "timezone": "America/New_York",
        "start": "2024-01-02T06:00:00-05:00",  # scheduleStartTime
        "offset_minutes": 1,  # scheduleOffset: 60 seconds
    }
    assert flow["tasks"] == [
        {"map_all": {"exclude": ["Description", "NextStep"]}},
        # The Arithmetic's temporary "Amount,Probability" is named by the Map that follows it.
        {"arithmetic": {"field": "weighted_amount", "operator": "multiply", "operands": ["Amount", "Probability"]}},
        {"cast": {"field": "weighted_amount", "type": "float"}},
        {"merge": {"field": "label", "format": "{Name} ({StageName})"}},
        {"validate": {"field": "LastModifiedDate", "check": "non_null", "on_failure": "fail"}},
    ]  # fmt: skip
    s3 = flow["destination"]["s3"]
    assert (s3["format"], s3["prefix"], s3["file_size_mb"]) == ("csv", "salesforce/pipeline", 128)
    assert s3["partitioning"] == ["year", "month", "day", "hour"]
    assert "Scheduled.schedule" not in " ".join(conversion.not_carried)  # start, offset carried
    assert "date in file names" in " ".join(conversion.not_carried)


def test_event_triggered_flow():
    conversion = imported("event_triggered")
    flow = conversion.result
    assert flow["trigger"] == {"event": "source_changes"}
    assert "triggerType" not in " ".join(conversion.not_carried)
    assert any(n.startswith("triggerConfig.triggerType: Event: a sensor") for n in conversion.notes)
    assert flow["tasks"] == [
        {"filter": {"field": "Industry", "operator": "not_equal_to", "value": "Government"}},
        {"map": {"Industry": "industry", "AnnualRevenue": "annual_revenue"}},
    ]
    assert flow["destination"] == {
        "connector": "eventbridge",
        "eventbridge": {
            "connection": "aws_default",
            "event_bus": "aws.partner/appflow/salesforce.com/123456789012/AccountChanges",
            "source": "aws.partner/appflow/salesforce.com/123456789012/AccountChanges",
            "detail_type": "Account",
        },
    }
    props = "destinationFlowConfigList[0].destinationConnectorProperties.EventBridge"
    reported(conversion, f"{props}.errorHandlingConfig")
    assert any(n.startswith("tasks[2]: Passthrough needs no task") for n in conversion.notes)


def test_s3_to_salesforce_upsert():
    conversion = imported("s3_to_salesforce_upsert")
    flow = conversion.result
    assert flow["source"] == {
        "connector": "s3",
        "connection": "aws_default",
        "object": "flowbridge-inbound/contacts",
        "format": "csv",  # s3InputFileType
        "fields": ["email", "first_name", "last_name", "phone"],
    }
    assert flow["tasks"] == [
        {"map": {"email": "Email", "first_name": "FirstName", "last_name": "LastName", "phone": "Phone"}},
        {"validate": {"field": "Email", "check": "non_null", "on_failure": "drop"}},
    ]  # fmt: skip
    assert flow["destination"] == {
        "connector": "salesforce", "write": "upsert", "key": ["Email"],
        "salesforce": {"connection": "sfdc_prod", "object": "Contact", "external_id_field": "Email"},
    }  # fmt: skip
    # AppFlow's cron(0 6 ? * MON-FRI *) as five fields.
    assert flow["trigger"] == {"schedule": "0 6 * * MON-FRI", "timezone": "Europe/Berlin"}
    # Flowbridge reads S3 (tests/connectors/test_s3_source.py runs such an import).
    assert not [line for line in conversion.not_carried if line.startswith("sourceFlowConfig")]
    props = "destinationFlowConfigList[0].destinationConnectorProperties.Salesforce"
    reported(conversion, f"{props}.errorHandlingConfig")


@pytest.mark.parametrize(
    ("transfer_api", "api"), [("AUTOMATIC", None), ("REST_SYNC", "rest"), ("BULKV2", "bulk")]
)
def test_salesforce_destination_data_transfer_api_is_carried_over(transfer_api, api):
    props = "destinationFlowConfigList[0].destinationConnectorProperties.Salesforce"

    def choose(raw: dict) -> None:
        sf = raw["destinationFlowConfigList"][0]["destinationConnectorProperties"]["Salesforce"]
        sf["dataTransferApi"] = transfer_api

    conversion = imported("s3_to_salesforce_upsert", edited("s3_to_salesforce_upsert", choose))
    destination = conversion.result["destination"]
    assert destination["salesforce"].get("api") == api
    assert Destination.model_validate(destination).salesforce.api == (api or "automatic")
    assert not [n for n in conversion.not_carried if n.startswith(f"{props}.dataTransferApi")]


def test_zendesk_to_redshift():
    conversion = imported("zendesk_to_redshift")
    flow = conversion.result
    assert flow["source"]["connector"] == "zendesk"
    assert flow["source"]["connection"] == "zendesk_support"
    assert flow["source"]["incremental"] == {"cursor_field": "updated_at"}
    assert flow["tasks"] == [
        {"map": {"id": {"to": "ticket_id", "type": "string"}}},  # integer -> string is a cast
        {"mask": {"field": "requester_email", "how": "last_n", "n": 12, "char": "x"}},
        {"validate": {"field": "ticket_id", "check": "non_null", "on_failure": "fail"}},
    ]
    assert flow["destination"] == {
        "connector": "redshift",
        "write": "append",
        "redshift": {"connection": "warehouse", "schema": "support", "table": "tickets"},
    }
    assert flow["trigger"] == {"schedule": "30 2 * * *", "timezone": "UTC"}
    # Flowbridge reads Zendesk: the source is carried over whole.
    assert not [line for line in conversion.not_carried if line.startswith("sourceFlowConfig")]
    props = "destinationFlowConfigList[0].destinationConnectorProperties.Redshift"
    assert "staging_bucket" in reported(conversion, f"{props}.intermediateBucketName")
    assert conversion.connections == {
        "zendesk_support": {"connector": "zendesk"},
        "warehouse": {"connector": "redshift", "staging_bucket": "flowbridge-redshift-staging"},
    }


def test_describe_flow_output():
    conversion = imported("describe_flow")
    flow = conversion.result
    assert flow["trigger"] == {
        "schedule": "rate(1 hour)", "timezone": "UTC", "status": "on",
        "start": "2024-05-02T10:00:00+00:00",
    }  # fmt: skip
    assert flow["source"]["incremental"]["start"] == "2024-04-01T00:00:00Z"
    assert flow["destination"]["s3"]["format"] == "jsonl"
    assert flow["destination"]["s3"]["glue"] == {"database": "crm"}
    reported(conversion, "metadataCatalogConfig.glueDataCatalog.roleArn")
    assert any(n.startswith("ResponseMetadata:") for n in conversion.notes)
    assert any("flowArn" in n and "createdAt" in n for n in conversion.notes)


def test_cloudformation_resource_uses_the_templates_paths():
    conversion = imported("cloudformation")
    flow = conversion.result
    assert flow["name"] == "salesforce_opportunities_to_s3"
    assert flow["trigger"] == {"schedule": "0 */6 * * *", "timezone": "UTC", "status": "on"}
    assert flow["source"]["incremental"] == {
        "cursor_field": "SystemModstamp",
        "start": "2024-01-01T00:00:00Z",
    }
    assert flow["tasks"] == [
        {"filter": {"field": "IsClosed", "operator": "equal_to", "value": False}},
        {"map": {"Amount": {"type": "integer"}, "StageName": "stage"}},
        {"mask": {"field": "Name", "how": "last_n", "n": 4}},
    ]
    assert flow["destination"]["s3"]["partitioning"] == ["year", "month", "run_id"]
    base = "Resources.OpportunitiesFlow.Properties"
    reported(conversion, f"{base}.Tags")
    reported(
        conversion, f"{base}.SourceFlowConfig.SourceConnectorProperties.Salesforce.DataTransferApi"
    )
    assert "'IsClosed' is read for a task" in reported(conversion, f"{base}.Tasks")


def test_a_bare_cloudformation_resource_imports_too():
    resource = fixture("cloudformation")["Resources"]["OpportunitiesFlow"]
    assert import_appflow(resource, "flow.json").result == imported("cloudformation").result


# -- invalid AppFlow JSON: every message names the file and the JSON path ----------------------


def edited(name: str, edit) -> dict:
    raw = copy.deepcopy(fixture(name))
    edit(raw)
    return raw


@pytest.mark.parametrize(
    ("name", "edit", "expected"),
    [
        (
            "salesforce_to_s3_masked",
            lambda r: r["tasks"][7].update(taskType="Validation"),
            "tasks[7].taskType: 'Validation' is not one of: Arithmetic, Filter",
        ),
        (
            "salesforce_to_s3_masked",
            lambda r: r["tasks"][7].update(connectorOperator={"Salesforce": "VALIDATE_POSITIVE"}),
            "tasks[7].connectorOperator.Salesforce: 'VALIDATE_POSITIVE' is not one of",
        ),
        (
            "zendesk_to_redshift",  # Zendesk has no EQUAL_TO among its operators
            lambda r: r["tasks"][1].update(connectorOperator={"Zendesk": "EQUAL_TO"}),
            "tasks[1].connectorOperator.Zendesk: 'EQUAL_TO' is not one of: PROJECTION, GREATER_THAN",
        ),
        (
            "salesforce_to_s3_masked",
            lambda r: r.update(flowName="big opportunities"),
            "flowName: 'big opportunities' does not match the pattern [a-zA-Z0-9][\\w!@#.-]+",
        ),
        (
            "salesforce_to_s3_masked",
            lambda r: r["tasks"][1]["taskProperties"].update(VALUE=""),
            "tasks[1].taskProperties.VALUE: '' does not match the pattern .+",
        ),
        (
            "salesforce_to_s3_masked",
            lambda r: r["tasks"][1]["taskProperties"].update(LIMIT="5"),
            "tasks[1].taskProperties: key 'LIMIT': 'LIMIT' is not one of: VALUE, VALUES",
        ),
        (
            "salesforce_to_s3_masked",
            lambda r: r.update(description="x" * 2049),
            "description: has 2049 characters; at most 2048 allowed",
        ),
        (
            "salesforce_to_s3_masked",
            lambda r: r.update(kmsArn="alias/flowbridge"),
            "kmsArn: has 16 characters; at least 20 needed",
        ),
        (
            "incremental_scheduled",
            lambda r: r["triggerConfig"]["triggerProperties"]["Scheduled"].update(scheduleOffset=36001),
            "triggerConfig.triggerProperties.Scheduled.scheduleOffset: 36001 is out of range: 0 to 36000",
        ),
        (
            "salesforce_to_s3_masked",
            lambda r: r["sourceFlowConfig"].pop("connectorType"),
            "sourceFlowConfig.connectorType: is required; add it",
        ),
        (
            "salesforce_to_s3_masked",
            lambda r: r["tasks"][1].pop("taskType"),
            "tasks[1].taskType: is required; add it",
        ),
        (
            "salesforce_to_s3_masked",
            lambda r: r["tasks"][1].update(sourceFields="Amount"),
            "tasks[1].sourceFields: expected an array, got a string",
        ),
        (
            "incremental_scheduled",
            lambda r: r["triggerConfig"]["triggerProperties"]["Scheduled"].update(scheduleOffset="60"),
            "triggerConfig.triggerProperties.Scheduled.scheduleOffset: expected a whole number, got a string",
        ),
        (
            "salesforce_to_s3_masked",
            lambda r: r["sourceFlowConfig"].update(conectorProfileName="x"),
            "sourceFlowConfig: unknown key 'conectorProfileName' (did you mean 'connectorProfileName'?)",
        ),
        (
            "describe_flow",
            lambda r: r.update(flowStatus="Running"),
            "flowStatus: 'Running' is not one of: Active, Deprecated",
        ),
        (
            "cloudformation",
            lambda r: r["Resources"]["OpportunitiesFlow"]["Properties"]["Tasks"][1]["TaskProperties"][1].update(Key="VALU"),
            "Resources.OpportunitiesFlow.Properties.Tasks[1].TaskProperties: key 'VALU': 'VALU' is not one of",
        ),
        (
            "cloudformation",
            lambda r: r["Resources"]["OpportunitiesFlow"]["Properties"]["TriggerConfig"]["TriggerProperties"].update(DataPullMode="Delta"),
            "Resources.OpportunitiesFlow.Properties.TriggerConfig.TriggerProperties.DataPullMode: 'Delta' is not one of: Incremental, Complete",
        ),
        (
            "cloudformation",
            lambda r: r["Resources"]["OpportunitiesFlow"]["Properties"]["DestinationFlowConfigList"][0]
            ["DestinationConnectorProperties"]["S3"].update(BucketName={"Ref": "LakeBucket"}),
            "Resources.OpportunitiesFlow.Properties.DestinationFlowConfigList[0].DestinationConnectorProperties.S3.BucketName: is a CloudFormation function (Ref)",
        ),
        (
            "cloudformation",
            lambda r: r["Resources"]["OpportunitiesFlow"]["Properties"]["Tasks"][0].pop("TaskType"),
            "Resources.OpportunitiesFlow.Properties.Tasks[0].TaskType: is required; add it",
        ),
    ],
    ids=[
        "bad-task-type", "bad-operator", "operator-of-another-connector", "flow-name-pattern",
        "empty-task-property", "unknown-task-property", "too-long", "too-short", "out-of-range",
        "missing-member", "missing-task-type", "wrong-type-array", "wrong-type-number",
        "unknown-key", "describe-status", "cfn-task-property", "cfn-enum", "cfn-intrinsic",
        "cfn-missing",
    ],
)  # fmt: skip
def test_invalid_appflow_json_names_the_file_and_path(name, edit, expected):
    message = problems(name, edited(name, edit))
    assert f"{name}.json: {expected}" in message


def test_checks_what_botocore_leaves_out():
    """botocore's ParamValidator checks types and required members only; patterns, enums and
    lengths are what AppFlow would reject later, so the import checks them up front."""
    raw = edited("salesforce_to_s3_masked", lambda r: r.update(flowName="big opportunities"))
    report = botocore.validate.ParamValidator().validate(raw, request_shape())
    assert not report.has_errors()
    assert check(raw, request_shape()) == [
        ("flowName", "'big opportunities' does not match the pattern [a-zA-Z0-9][\\w!@#.-]+")
    ]


def test_an_import_that_would_not_load_is_refused():
    """AppFlow allows bucket names the flow file does not (S3 has not for years): no file then."""
    raw = edited(
        "describe_flow",
        lambda r: r["destinationFlowConfigList"][0]["destinationConnectorProperties"]["S3"].update(
            bucketName="Flowbridge_Lake"
        ),
    )
    message = problems("describe_flow", raw)
    assert "the imported flow file would not load: destination.s3.bucket:" in message


def test_a_template_with_two_flows_is_refused():
    raw = fixture("cloudformation")
    raw["Resources"]["Second"] = raw["Resources"]["OpportunitiesFlow"]
    assert "holds 2 resources of Type AWS::AppFlow::Flow (OpportunitiesFlow, Second)" in problems(
        "cloudformation", raw
    )


# -- export ------------------------------------------------------------------------------------


def test_export_of_the_example_is_valid_for_botocore():
    exported = export_file(EXAMPLE)
    request = json.loads(json.dumps(exported.result))  # what the JSON file holds
    assert check(request, request_shape()) == []
    model = botocore.session.get_session().get_service_model("appflow")
    botocore.validate.validate_parameters(request, model.operation_model("CreateFlow").input_shape)
    assert request["sourceFlowConfig"]["sourceConnectorProperties"] == {
        "Salesforce": {"object": "Opportunity"}
    }
    s3 = request["destinationFlowConfigList"][0]["destinationConnectorProperties"]["S3"]
    assert s3["s3OutputFormatConfig"]["prefixConfig"] == {
        "prefixType": "PATH",
        "prefixFormat": "DAY",
    }
    # AppFlow's tasks name source fields: the validate on amount_usd tests Amount.
    validate = next(t for t in request["tasks"] if t["taskType"] == "Validate")
    assert validate["sourceFields"] == ["Amount"]
    text = " | ".join(exported.not_carried)
    assert "tasks[1].mask: mask sha256" in text
    assert "tasks[2].validate.on_failure: quarantine" in text
    assert "destination.s3.encryption: alias/flowbridge" in text


def test_export_then_import_gives_back_the_same_tasks():
    original = load_flow_file(EXAMPLE)
    back = import_appflow(json.loads(json.dumps(export_file(EXAMPLE).result)), "exported.json")
    expected = [
        t.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        for t in original.tasks
        if t.model_dump().get("mask", {}).get("how") != "sha256"  # reported: AppFlow cannot
    ]
    expected[-1]["validate"]["on_failure"] = "drop"  # reported: quarantine has no AppFlow twin
    assert back.result["tasks"] == expected
    assert back.result["source"]["fields"] == original.source.fields
    s3 = back.result["destination"]["s3"]
    assert (s3["bucket"], s3["prefix"], s3["format"], s3["partitioning"]) == (
        "flowbridge-example-lake", "salesforce/opportunities", "parquet", ["year", "month", "day"]
    )  # fmt: skip


EVERY_TASK = """\
source:
  connection: salesforce_sandbox
  object: Opportunity
  fields: [Id, Name, Amount, StageName, CloseDate, IsWon]
tasks:
  - filter: {field: Amount, operator: greater_than_or_equal_to, value: 10000}
  - filter: {field: StageName, operator: in, value: [Prospecting, Closed Won]}
  - filter: {field: CloseDate, operator: between, value: [2024-01-01, 2024-06-30]}
  - filter: {field: IsWon, operator: equal_to, value: true}
  - filter: {field: Name, operator: is_not_null}
  - map: {Amount: {to: amount, type: float}}
  - mask: {field: Name, how: last_n, n: 3, char: '#'}
  - truncate: {field: Name, length: 10}
  - arithmetic: {field: doubled, operator: add, operands: [amount, amount]}
  - merge: {field: label, format: '{Name}: {amount}'}
  - validate: {field: amount, check: non_zero, on_failure: fail}
destination:
  connector: s3
  s3: {connection: aws_default, bucket: flowbridge-example-lake}
"""


def test_every_appflow_task_goes_there_and_back(tmp_path):
    (tmp_path / "connections.yaml").write_text((EXAMPLE.parent / "connections.yaml").read_text())
    path = tmp_path / "every_task.yaml"
    path.write_text(EVERY_TASK)
    exported = export_file(path)
    assert exported.not_carried == [
        "tasks[4].filter: is_not_null: AppFlow's filters cannot test for null"
    ]
    kinds = [(t["taskType"], *t["connectorOperator"].values()) for t in exported.result["tasks"]]
    assert kinds[:10] == [
        ("Filter", "PROJECTION"), ("Filter", "GREATER_THAN_OR_EQUAL_TO"), ("Filter", "EQUAL_TO"),
        ("Filter", "BETWEEN"), ("Filter", "EQUAL_TO"), ("Mask", "MASK_LAST_N"), ("Truncate", "NO_OP"),
        ("Arithmetic", "ADDITION"), ("Merge", "NO_OP"), ("Validate", "VALIDATE_NON_ZERO"),
    ]  # fmt: skip
    back = import_appflow(json.loads(json.dumps(exported.result)), "exported.json")
    original = load_flow_file(path).tasks
    assert back.result["tasks"] == [
        t.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        for i, t in enumerate(original)
        if i != 4
    ]


@pytest.mark.parametrize(
    ("cron", "appflow"),
    [("0 6 * * 1-5", "cron(0 6 ? * 2-6 *)"), ("15 */2 1 * *", "cron(15 */2 1 * ? *)"),
     ("0 0 * * 0,6", "cron(0 0 ? * 1,7 *)")],
)  # fmt: skip
def test_cron_goes_both_ways(tmp_path, cron, appflow):
    flow = EXAMPLE.read_text() + f'trigger: {{schedule: "{cron}", timezone: Europe/Paris}}\n'
    (tmp_path / "connections.yaml").write_text((EXAMPLE.parent / "connections.yaml").read_text())
    path = tmp_path / "cron_flow.yaml"
    path.write_text(flow)
    exported = export_file(path)
    scheduled = exported.result["triggerConfig"]["triggerProperties"]["Scheduled"]
    assert scheduled["scheduleExpression"] == appflow
    assert scheduled["dataPullMode"] == "Incremental"
    back = import_appflow(exported.result, "exported.json")
    assert back.result["trigger"] == {"schedule": cron, "timezone": "Europe/Paris"}
    assert back.result["source"]["incremental"] == {"cursor_field": "SystemModstamp"}


def test_schedule_start_and_offset_go_both_ways(tmp_path):
    flow = EXAMPLE.read_text() + (
        'trigger: {schedule: "0 6 * * 1-5", timezone: Europe/Paris, '
        "start: 2025-03-01T08:00:00, offset_minutes: 15}\n"
    )
    (tmp_path / "connections.yaml").write_text((EXAMPLE.parent / "connections.yaml").read_text())
    path = tmp_path / "offset_flow.yaml"
    path.write_text(flow)
    scheduled = export_file(path).result["triggerConfig"]["triggerProperties"]["Scheduled"]
    # A start without an offset is read in the schedule's timezone; AppFlow needs the offset.
    assert scheduled["scheduleStartTime"] == "2025-03-01T08:00:00+01:00"
    assert scheduled["scheduleOffset"] == 900  # seconds
    back = import_appflow(export_file(path).result, "exported.json").result["trigger"]
    assert back["start"] == "2025-03-01T08:00:00+01:00" and back["offset_minutes"] == 15


def test_offset_in_odd_seconds_and_an_active_event_flow():
    raw = fixture("incremental_scheduled")
    raw["triggerConfig"]["triggerProperties"]["Scheduled"]["scheduleOffset"] = 100
    conversion = imported("incremental_scheduled", raw)
    assert conversion.result["trigger"]["offset_minutes"] == 2
    assert any("100 seconds written as offset_minutes: 2" in n for n in conversion.notes)
    raw = fixture("event_triggered")
    active = import_appflow({"flowStatus": "Active", **raw}, "describe.json")
    assert active.result["trigger"] == {"event": "source_changes", "status": "on"}


def test_export_reports_what_appflow_cannot_express():
    exported = export_file(REPO / "flow_defs" / "salesforce_big_opportunities.yaml")
    text = " | ".join(exported.not_carried)
    for expected in (
        "tasks[2].format: AppFlow has no format task",
        "tasks[3].compute: AppFlow has no compute task",
        "tasks[5].mask: mask sha256",
        "destination.connector: lake: AppFlow has no such destination",
    ):
        assert expected in text
    # amount_band comes from the compute AppFlow cannot run, so no Map sends it anywhere.
    targets = [t.get("destinationField") for t in exported.result["tasks"]]
    assert "amount_band" not in targets and "amount_usd" in targets
    assert check(exported.result, request_shape()) == []


def test_export_of_the_redshift_and_eventbridge_examples(monkeypatch):
    monkeypatch.delenv("REDSHIFT_STAGING_BUCKET", raising=False)
    redshift = export_file(REPO / "flow_defs" / "salesforce_opportunities_to_redshift.yaml")
    assert redshift.result["destinationFlowConfigList"] == [
        {
            "connectorType": "Redshift",
            "connectorProfileName": "warehouse",
            "destinationConnectorProperties": {
                "Redshift": {
                    "object": "sales.opportunities",
                    # the connection's staging_bucket default, from connections.yaml
                    "intermediateBucketName": "flowbridge-redshift-staging",
                }
            },
        }
    ]
    scheduled = redshift.result["triggerConfig"]["triggerProperties"]["Scheduled"]
    assert scheduled == {
        "scheduleExpression": "rate(1 hours)",
        "dataPullMode": "Incremental",
        "timezone": "UTC",
    }
    assert "destination.write: upsert: AppFlow only adds records" in " | ".join(
        redshift.not_carried
    )
    events = export_file(REPO / "flow_defs" / "salesforce_won_to_eventbridge.yaml")
    props = events.result["destinationFlowConfigList"][0]["destinationConnectorProperties"]
    assert props == {"EventBridge": {"object": "flowbridge"}}
    assert "partner event source" in " | ".join(events.not_carried)
    for exported in (redshift, events):
        assert check(exported.result, request_shape()) == []


# -- through the command line ------------------------------------------------------------------


def test_cli_import_writes_the_flow_file_and_reports(tmp_path, capsys):
    (tmp_path / "connections.yaml").write_text("aws_default:\n  connector: aws\n")
    out = tmp_path / "contacts.yaml"
    code = main(["import-appflow", str(FIXTURES / "s3_to_salesforce_upsert.json"), "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"wrote {out}" in captured.out
    assert (
        "not carried over: destinationFlowConfigList[0].destinationConnectorProperties."
        "Salesforce.errorHandlingConfig: records a destination refuses go to" in captured.err
    )
    assert "not carried over: sourceFlowConfig" not in captured.err  # S3 is a source
    assert "note: flowName: 'inbound-contacts-to-salesforce' is named" in captured.err
    assert "aws_default" not in captured.err  # it is in connections.yaml
    text = out.read_text()
    assert text.startswith("# Imported from s3_to_salesforce_upsert.json")
    props = "destinationFlowConfigList[0].destinationConnectorProperties.Salesforce"
    assert f"#   - {props}.errorHandlingConfig: " in text
    # connector: s3 on an aws connection (AppFlow's S3 source) loads.
    connections = load_connections(tmp_path / "connections.yaml")
    assert load_flow_file(out, connections).destination.key == ["Email"]
    # A second import does not overwrite the file unless asked to.
    code = main(["import-appflow", str(FIXTURES / "s3_to_salesforce_upsert.json"), "-o", str(out)])
    assert code == 1
    assert "exists; pass --force" in capsys.readouterr().err


def test_cli_import_notes_a_missing_connection(tmp_path, capsys):
    out = tmp_path / "flow.yaml"
    assert main(["import-appflow", str(FIXTURES / "zendesk_to_redshift.json"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"note: connection 'zendesk_support' is not in {tmp_path / 'connections.yaml'}" in err
    assert "note: connection 'warehouse' is not in" in err


def test_cli_import_of_invalid_json_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            edited("event_triggered", lambda r: r["triggerConfig"].update(triggerType="Manual"))
        )
    )
    assert main(["import-appflow", str(bad), "-o", str(tmp_path / "x.yaml")]) == 1
    err = capsys.readouterr().err
    assert (
        f"error: {bad}: triggerConfig.triggerType: 'Manual' is not one of: Scheduled, Event, OnDemand"
        in err
    )
    assert not (tmp_path / "x.yaml").exists()
    bad.write_text('{"flowName": "x",\n "tasks": [}')
    assert main(["import-appflow", str(bad)]) == 1
    assert f"error: {bad}: not valid JSON at line 2, column 12" in capsys.readouterr().err


def test_cli_export_writes_json_and_reports(tmp_path, capsys):
    out = tmp_path / "flow.json"
    assert main(["export-appflow", str(EXAMPLE), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "not expressible in AppFlow: tasks[1].mask: mask sha256" in err
    assert check(json.loads(out.read_text()), request_shape()) == []


def test_cli_export_of_a_broken_flow_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("  object:", "  objekt:"))
    assert main(["export-appflow", str(bad)]) == 1
    assert "source: unknown key 'objekt' (did you mean 'object'?)" in capsys.readouterr().err
