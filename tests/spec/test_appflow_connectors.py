"""`import-appflow` / `export-appflow` for the sources and sinks beyond Salesforce and S3: ServiceNow,
Slack, SAP OData, Zendesk (both ways), HubSpot and GA4 (AppFlow's CustomConnector); each fixture in
tests/spec/appflow/ goes there and back, and what cannot go across is refused by its path."""

import json

import botocore.session
import botocore.validate
import pytest
import yaml

from flow_assets.cli import main
from flow_assets.connectors import (
    CONNECTION_TYPES,
    SOURCE_CONNECTORS,
    google_analytics,
    hubspot,
    slack,
    zendesk,
)
from flow_assets.spec import FlowFileError, load_connections, load_flow_file
from flow_assets.spec.appflow import import_appflow, to_yaml
from flow_assets.spec.appflow_export import export_file
from flow_assets.spec.appflow_model import check, request_shape
from flow_assets.spec.appflow_tables import CONNECTION_KINDS, OBJECTS, READABLE
from tests.conftest import REPO
from tests.spec.test_appflow import FIXTURES, edited, imported, reported

FLOWS = REPO / "flow_defs"
SOURCE = "sourceFlowConfig.sourceConnectorProperties"
DEST = "destinationFlowConfigList[0].destinationConnectorProperties"
NEW_FIXTURES = [
    "servicenow_incidents_to_s3",
    "slack_conversation_to_s3",
    "sap_sales_orders_to_s3",
    "hubspot_deals_to_s3",
    "salesforce_contacts_to_hubspot",
    "salesforce_cases_to_zendesk",
    "zendesk_to_redshift",
]


def refused(name: str, raw: dict) -> str:
    with pytest.raises(FlowFileError) as info:
        imported(name, raw)
    return str(info.value)


def write_flow(tmp_path, conversion, connections: dict | None = None):
    """The imported flow file, beside a connections.yaml with the connections it suggests."""
    entries = conversion.connections if connections is None else connections
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump(entries))
    path = tmp_path / f"{conversion.result['name']}.yaml"
    path.write_text(to_yaml(conversion, "fixture.json"))
    return path


def export_refusal(path) -> str:
    with pytest.raises(FlowFileError) as info:
        export_file(path)
    return str(info.value)


def test_the_importers_sources_are_flowbridges():
    """READABLE and OBJECTS repeat connectors/ (which pulls in Dagster): they must agree."""
    assert sorted(READABLE) == sorted("s3" if c == "aws" else c for c in SOURCE_CONNECTORS)
    assert sorted(CONNECTION_KINDS) == sorted(CONNECTION_TYPES)
    theirs = {
        "zendesk": zendesk.FIELDS,
        "slack": slack.FIELDS,
        "hubspot": hubspot.OBJECTS,
        "google_analytics": (google_analytics.OBJECT,),
    }
    assert {k: sorted(v) for k, v in theirs.items()} == {k: sorted(v) for k, v in OBJECTS.items()}


# -- import ------------------------------------------------------------------------------------


def test_servicenow_table_with_filters_and_an_incremental_cursor():
    conversion = imported("servicenow_incidents_to_s3")
    flow = conversion.result
    assert flow["source"] == {
        "connector": "servicenow",
        "connection": "servicenow_prod",
        "object": "incident",  # the table
        "fields": ["sys_id", "number", "short_description", "priority", "state", "assigned_to",
                   "opened_at", "sys_updated_on"],
        "incremental": {"cursor_field": "sys_updated_on", "start": "2024-01-01T00:00:00Z"},
    }  # fmt: skip
    low, high = flow["tasks"][2]["filter"]["value"]
    assert (low.isoformat(), high.isoformat()) == (
        "2024-01-01T00:00:00+00:00", "2024-12-31T23:59:59+00:00"
    )  # fmt: skip
    assert flow["tasks"][:2] + flow["tasks"][3:] == [
        {"filter": {"field": "priority", "operator": "equal_to", "value": 1}},
        {"filter": {"field": "short_description", "operator": "contains", "value": "outage"}},
        {"map": {"number": "incident_number", "state": {"type": "string"}}},
        {"mask": {"field": "assigned_to", "how": "all"}},
    ]
    assert conversion.not_carried == []
    assert conversion.connections["servicenow_prod"] == {"connector": "servicenow"}


def test_a_slack_conversation_is_messages_filtered_on_its_channel():
    conversion = imported("slack_conversation_to_s3")
    source, tasks = conversion.result["source"], conversion.result["tasks"]
    assert (source["connector"], source["object"]) == ("slack", "messages")
    assert source["fields"][-1] == "channel"  # added for the filter
    assert tasks[0] == {
        "filter": {"field": "channel", "operator": "equal_to", "value": "C0123456789"}
    }
    assert tasks[1:] == [
        {"filter": {"field": "reply_count", "operator": "greater_than_or_equal_to", "value": 1}},
        {"map": {"user": "user_id"}},
        {"truncate": {"field": "text", "length": 2000}},
    ]
    assert any("the conversation C0123456789 is the messages object" in n for n in conversion.notes)
    assert conversion.not_carried == []


def test_another_slack_object_is_kept_and_reported():
    raw = edited("slack_conversation_to_s3",
                 lambda r: r["sourceFlowConfig"]["sourceConnectorProperties"]["Slack"].update(
                     object="files"))  # fmt: skip
    conversion = imported("slack_conversation_to_s3", raw)
    assert conversion.result["source"]["object"] == "files"
    assert "channel" not in conversion.result["source"]["fields"]
    assert "Flowbridge's slack source reads messages, channels, users" in reported(
        conversion, f"{SOURCE}.Slack.object"
    )


def test_sap_object_path_is_the_connections_service_and_the_entity_set():
    conversion = imported("sap_sales_orders_to_s3")
    source = conversion.result["source"]
    assert (source["connector"], source["connection"]) == ("sap_odata", "sap_s4_prod")
    assert source["object"] == "A_SalesOrder"
    assert source["page_size"] == 5000  # paginationConfig.maxPageSize
    assert conversion.connections["sap_s4_prod"] == {
        "connector": "sap_odata",
        "service_url": "https://HOST:PORT/sap/opu/odata/sap/API_SALES_ORDER_SRV",
    }
    assert "not in parallel" in reported(conversion, f"{SOURCE}.SAPOData.parallelismConfig")
    # EDM types are types: Edm.String -> string and Edm.DateTimeOffset -> timestamp cast nothing.
    assert conversion.result["tasks"] == [
        {"filter": {"field": "SalesOrderType", "operator": "in", "value": ["OR", "CBFD"]}},
        {"filter": {"field": "TotalNetAmount", "operator": "greater_than", "value": 0}},
        {"map": {"CreationDate": {"type": "date"}, "TotalNetAmount": "net_amount",
                 "TransactionCurrency": "currency"}},
        {"validate": {"field": "SoldToParty", "check": "non_null", "on_failure": "drop"}},
    ]  # fmt: skip


def test_sap_without_an_object_path_is_refused():
    raw = edited("sap_sales_orders_to_s3",
                 lambda r: r["sourceFlowConfig"]["sourceConnectorProperties"]["SAPOData"].pop(
                     "objectPath"))  # fmt: skip
    assert (
        f"sap_sales_orders_to_s3.json: {SOURCE}.SAPOData.objectPath: is required to read SAP OData"
        in refused("sap_sales_orders_to_s3", raw)
    )


def test_hubspot_is_a_custom_connector_profile_named_in_connections_yaml():
    conversion = imported("hubspot_deals_to_s3")
    source = conversion.result["source"]
    assert source["connector"] == "hubspot" and source["connection"] == "hubspot_crm"
    assert source["object"] == "deals"  # entityName
    assert source["incremental"] == {
        "cursor_field": "hs_lastmodifieddate",
        "start": "2023-01-01T00:00:00Z",
    }
    assert conversion.result["tasks"][:2] == [
        {"filter": {"field": "pipeline", "operator": "equal_to", "value": "default"}},
        {"filter": {"field": "amount", "operator": "greater_than_or_equal_to", "value": 1000.5}},
    ]
    assert conversion.not_carried == []


def test_custom_connector_settings_that_have_no_place_are_reported():
    def edit(raw):
        props = raw["sourceFlowConfig"]["sourceConnectorProperties"]["CustomConnector"]
        props.update(entityName="crm/v3/objects/Deals", customProperties={"archived": "false"},
                     dataTransferApi={"Name": "search", "Type": "SYNC"})  # fmt: skip

    conversion = imported("hubspot_deals_to_s3", edited("hubspot_deals_to_s3", edit))
    assert conversion.result["source"]["object"] == "deals"
    props = f"{SOURCE}.CustomConnector"
    assert any(n.startswith(f"{props}.entityName: 'crm/v3/objects/Deals' is the object deals")
               for n in conversion.notes)  # fmt: skip
    assert "'false': no flow-file setting" in reported(
        conversion, f"{props}.customProperties.archived"
    )
    assert "picks the hubspot API itself" in reported(conversion, f"{props}.dataTransferApi")


def test_a_ga4_custom_connector_reads_the_report_object():
    def edit(raw):
        raw["sourceFlowConfig"]["connectorProfileName"] = "ga4-web"
        raw["sourceFlowConfig"]["sourceConnectorProperties"]["CustomConnector"]["entityName"] = (
            "web-traffic"
        )

    conversion = imported("hubspot_deals_to_s3", edited("hubspot_deals_to_s3", edit))
    source = conversion.result["source"]
    assert (source["connector"], source["connection"], source["object"]) == (
        "google_analytics", "ga4_web", "report"
    )  # fmt: skip
    assert "'web-traffic': a GA4 connection reads one object, report" in reported(
        conversion, f"{SOURCE}.CustomConnector.entityName"
    )


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda r: r["sourceFlowConfig"].update(connectorProfileName="mystery-app"),
            "sourceFlowConfig.connectorProfileName: a CustomConnector flow does not say which "
            "connector profile 'mystery-app' reaches (AppFlow keeps that as the profile's "
            "connectorLabel): define connection 'mystery_app' in connections.yaml",
        ),
        (
            lambda r: r["sourceFlowConfig"].pop("connectorProfileName"),
            "sourceFlowConfig.connectorType: a CustomConnector flow does not say which",
        ),
        (
            lambda r: r["sourceFlowConfig"].update(connectorProfileName="sfdc-prod"),
            "sourceFlowConfig.connectorProfileName: connection 'sfdc_prod' in connections.yaml "
            "is a salesforce connection",
        ),
    ],
    ids=["unknown-profile", "no-profile", "not-a-custom-connector"],
)
def test_a_custom_connector_profile_must_be_known(edit, expected):
    raw = edited("hubspot_deals_to_s3", edit)
    with pytest.raises(FlowFileError) as info:
        import_appflow(raw, "hubspot.json", {"sfdc_prod": "salesforce"})
    assert f"hubspot.json: {expected}" in str(info.value)


def test_universal_analytics_is_refused():
    def edit(raw):
        raw["sourceFlowConfig"] = {
            "connectorType": "Googleanalytics",
            "connectorProfileName": "ga-ua",
            "sourceConnectorProperties": {"GoogleAnalytics": {"object": "reports/ga:123456"}},
        }
        for task in raw["tasks"]:
            task["connectorOperator"] = {"GoogleAnalytics": "PROJECTION"}
        raw["tasks"] = raw["tasks"][:1]

    message = refused("hubspot_deals_to_s3", edited("hubspot_deals_to_s3", edit))
    assert (
        "hubspot_deals_to_s3.json: sourceFlowConfig.connectorType: Googleanalytics is AppFlow's "
        "Universal Analytics connector" in message
    )
    assert "write that flow anew (connector google_analytics, object report" in message


def test_zendesk_destination_upserts_tickets_by_external_id():
    conversion = imported("salesforce_cases_to_zendesk")
    assert conversion.result["destination"] == {
        "connector": "zendesk",
        "write": "upsert",
        "key": ["external_id"],
        "zendesk": {"connection": "zendesk_support", "object": "tickets"},
    }
    reported(conversion, f"{DEST}.Zendesk.errorHandlingConfig")
    raw = edited("salesforce_cases_to_zendesk",
                 lambda r: r["destinationFlowConfigList"][0]["destinationConnectorProperties"][
                     "Zendesk"].update(writeOperationType="INSERT", idFieldNames=[]))  # fmt: skip
    inserted = imported("salesforce_cases_to_zendesk", raw).result["destination"]
    assert (inserted["write"], "key" in inserted) == ("insert", False)


def test_hubspot_destination_upserts_by_the_id_field():
    conversion = imported("salesforce_contacts_to_hubspot")
    assert conversion.result["destination"] == {
        "connector": "hubspot",
        "write": "upsert",
        "key": ["email"],
        "hubspot": {"connection": "hubspot_crm", "object": "contacts", "id_property": "email"},
    }
    assert conversion.connections["hubspot_crm"] == {"connector": "hubspot"}


def _zendesk_dest(**props):
    return lambda r: r["destinationFlowConfigList"][0]["destinationConnectorProperties"][
        "Zendesk"
    ].update(props)


def _hubspot_dest(**props):
    return lambda r: r["destinationFlowConfigList"][0]["destinationConnectorProperties"][
        "CustomConnector"
    ].update(props)


@pytest.mark.parametrize(
    ("name", "edit", "expected"),
    [
        ("salesforce_cases_to_zendesk", _zendesk_dest(object="users"),
         f"{DEST}.Zendesk.object: 'users': Flowbridge's zendesk destination writes tickets only"),
        ("salesforce_cases_to_zendesk", _zendesk_dest(writeOperationType="UPDATE"),
         f"{DEST}.Zendesk.writeOperationType: UPDATE: Flowbridge's zendesk destination inserts"),
        ("salesforce_cases_to_zendesk", _zendesk_dest(idFieldNames=["id"]),
         f"{DEST}.Zendesk.idFieldNames: ['id']: an upsert to zendesk here matches records on "
         "[external_id]"),
        ("salesforce_contacts_to_hubspot", _hubspot_dest(idFieldNames=["email", "phone"]),
         f"{DEST}.CustomConnector.idFieldNames: ['email', 'phone']: an upsert to hubspot here "
         "matches records on one field"),
        ("salesforce_contacts_to_hubspot", _hubspot_dest(writeOperationType="DELETE"),
         f"{DEST}.CustomConnector.writeOperationType: DELETE"),
        ("salesforce_contacts_to_hubspot",
         lambda r: r["destinationFlowConfigList"][0].update(connectorProfileName="ga4-web"),
         "destinationFlowConfigList[0].connectorType: connection 'ga4_web' is google_analytics, "
         "a source only"),
    ],
    ids=["zendesk-users", "zendesk-update", "zendesk-upsert-by-id", "hubspot-two-ids",
         "hubspot-delete", "ga4-destination"],
)  # fmt: skip
def test_writes_flowbridge_cannot_make_are_refused(name, edit, expected):
    assert f"{name}.json: {expected}" in refused(name, edited(name, edit))


def test_the_suggested_connections_make_the_flow_load(tmp_path):
    conversion = imported("sap_sales_orders_to_s3")
    text = to_yaml(conversion, "sap.json")
    head = text.split("\nname:")[0].splitlines()
    start = next(i for i, line in enumerate(head) if line.startswith("# Connections it names"))
    entries = "\n".join(line.removeprefix("#   ") for line in head[start + 1 :])
    (tmp_path / "connections.yaml").write_text(entries)
    connections = load_connections(tmp_path / "connections.yaml")
    assert set(connections) == {"sap_s4_prod", "aws_default"}
    path = tmp_path / "sap.yaml"
    path.write_text(text)
    assert load_flow_file(path, connections).source.connection == "sap_s4_prod"


# -- there and back ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_FIXTURES)
def test_export_then_import_gives_back_the_same_flow(tmp_path, name):
    conversion = imported(name)
    exported = export_file(write_flow(tmp_path, conversion))
    request = json.loads(json.dumps(exported.result))  # what the JSON file holds
    assert check(request, request_shape()) == []
    model = botocore.session.get_session().get_service_model("appflow")
    botocore.validate.validate_parameters(request, model.operation_model("CreateFlow").input_shape)
    assert exported.not_carried == []
    assert imported(name, request).result == conversion.result


def test_export_of_the_new_sources_and_sinks(tmp_path):
    sap = export_file(write_flow(tmp_path, imported("sap_sales_orders_to_s3"))).result
    assert sap["sourceFlowConfig"]["connectorType"] == "SAPOData"
    assert sap["sourceFlowConfig"]["sourceConnectorProperties"] == {
        "SAPOData": {
            "objectPath": "/sap/opu/odata/sap/API_SALES_ORDER_SRV/A_SalesOrder",
            "paginationConfig": {"maxPageSize": 5000},
        }
    }
    assert {next(iter(t["connectorOperator"])) for t in sap["tasks"]} == {"SAPOData"}
    slack_request = export_file(write_flow(tmp_path, imported("slack_conversation_to_s3"))).result
    assert slack_request["sourceFlowConfig"]["sourceConnectorProperties"] == {
        "Slack": {"object": "conversations/C0123456789"}
    }
    # The channel filter is AppFlow's object, not one of its filters.
    filters = [t["sourceFields"] for t in slack_request["tasks"] if t["taskType"] == "Filter"]
    assert ["channel"] not in filters
    servicenow = export_file(write_flow(tmp_path, imported("servicenow_incidents_to_s3"))).result
    assert servicenow["sourceFlowConfig"]["connectorType"] == "Servicenow"
    assert {next(iter(t["connectorOperator"])) for t in servicenow["tasks"]} == {"ServiceNow"}
    zendesk_request = export_file(
        write_flow(tmp_path, imported("salesforce_cases_to_zendesk"))
    ).result
    assert zendesk_request["destinationFlowConfigList"] == [
        {
            "connectorType": "Zendesk",
            "connectorProfileName": "zendesk_support",
            "destinationConnectorProperties": {
                "Zendesk": {
                    "object": "tickets",
                    "writeOperationType": "UPSERT",
                    "idFieldNames": ["external_id"],
                }
            },
        }
    ]


def test_export_of_hubspot_is_a_custom_connector_and_says_what_to_check():
    exported = export_file(FLOWS / "salesforce_contacts_to_hubspot.yaml")
    assert exported.result["destinationFlowConfigList"] == [
        {
            "connectorType": "CustomConnector",
            "connectorProfileName": "hubspot_sandbox",
            "destinationConnectorProperties": {
                "CustomConnector": {
                    "entityName": "contacts",
                    "writeOperationType": "UPSERT",
                    "idFieldNames": ["email"],
                }
            },
        }
    ]
    assert any(
        n.startswith("destination.hubspot: AppFlow's HubSpot connector is a managed custom "
                     "connector") and "list-connector-entities" in n
        for n in exported.notes
    )  # fmt: skip
    source = export_file(FLOWS / "hubspot_deals_to_lake.yaml").result["sourceFlowConfig"]
    assert source["connectorType"] == "CustomConnector"
    assert source["sourceConnectorProperties"] == {"CustomConnector": {"entityName": "deals"}}


@pytest.mark.parametrize(
    ("write", "api", "props"),
    [
        ("insert", "automatic", {"writeOperationType": "INSERT", "dataTransferApi": "AUTOMATIC"}),
        ("update", "bulk",
         {"writeOperationType": "UPDATE", "idFieldNames": ["Id"], "dataTransferApi": "BULKV2"}),
        ("delete", "rest",
         {"writeOperationType": "DELETE", "idFieldNames": ["Id"], "dataTransferApi": "REST_SYNC"}),
    ],
)  # fmt: skip
def test_export_of_a_salesforce_destination(tmp_path, write, api, props):
    (tmp_path / "connections.yaml").write_text((FLOWS / "connections.yaml").read_text())
    path = tmp_path / "to_salesforce.yaml"
    path.write_text(
        "source: {connection: zendesk_sandbox, object: tickets, fields: [id, subject]}\n"
        f"destination:\n  connector: salesforce\n  write: {write}\n"
        f"  salesforce: {{connection: salesforce_sandbox, object: Case, api: {api}}}\n"
    )
    exported = export_file(path)
    [dest] = exported.result["destinationFlowConfigList"]
    assert dest["destinationConnectorProperties"] == {"Salesforce": {"object": "Case", **props}}
    assert exported.not_carried == []
    back = import_appflow(exported.result, "exported.json").result["destination"]
    assert back["write"] == write
    assert back["salesforce"].get("api", "automatic") == api


def test_a_bulk_threshold_of_its_own_is_reported(tmp_path):
    (tmp_path / "connections.yaml").write_text((FLOWS / "connections.yaml").read_text())
    path = tmp_path / "to_salesforce.yaml"
    path.write_text(
        "source: {connection: zendesk_sandbox, object: tickets, fields: [id, subject]}\n"
        "destination:\n  connector: salesforce\n  write: insert\n"
        "  salesforce: {connection: salesforce_sandbox, object: Case, bulk_threshold: 500}\n"
    )
    assert export_file(path).not_carried == [
        "destination.salesforce.bulk_threshold: 500: AppFlow's AUTOMATIC switches to Bulk API "
        "2.0 at 1000 records"
    ]


def test_sap_page_size_beyond_appflows_is_reported(tmp_path):
    conversion = imported("sap_sales_orders_to_s3")
    conversion.result["source"]["page_size"] = 20_000
    exported = export_file(write_flow(tmp_path, conversion))
    props = exported.result["sourceFlowConfig"]["sourceConnectorProperties"]["SAPOData"]
    assert "paginationConfig" not in props
    assert exported.not_carried == [
        "source.page_size: 20000: AppFlow's SAP pages hold at most 10000 records"
    ]


@pytest.mark.parametrize(
    ("flow", "connections", "expected"),
    [
        ("ga4_traffic_to_lake.yaml", None,
         "source.connection: AppFlow's Googleanalytics connector reads Universal Analytics views"),
        ("slack_messages_to_lake.yaml", None,
         "tasks: AppFlow's Slack source reads one conversation (object conversations/<channel "
         "id>): start the tasks with filter: {field: channel, operator: equal_to"),
        ("sap_sales_orders_to_lake.yaml", {"sap_sandbox": {"connector": "sap_odata"}},
         "source.connection: needs service_url in connections.yaml: AppFlow's objectPath is its "
         "path and the entity set"),
    ],
    ids=["ga4", "slack-without-channel", "sap-without-service-url"],
)  # fmt: skip
def test_export_refuses_what_appflow_cannot_read(tmp_path, flow, connections, expected):
    entries = connections or yaml.safe_load((FLOWS / "connections.yaml").read_text())
    (tmp_path / "connections.yaml").write_text(yaml.safe_dump(entries))
    path = tmp_path / flow
    path.write_text((FLOWS / flow).read_text())
    assert f"{path}: {expected}" in export_refusal(path)


def test_export_of_slack_channels_is_refused(tmp_path):
    (tmp_path / "connections.yaml").write_text((FLOWS / "connections.yaml").read_text())
    path = tmp_path / "channels.yaml"
    path.write_text("source: {connection: slack_sandbox, object: channels}\n")
    assert (
        f"{path}: source.object: 'channels': Slack flows export as a conversation's messages"
        in (export_refusal(path))
    )


# -- through the command line ------------------------------------------------------------------


def test_cli_import_of_a_custom_connector_reads_connections_yaml(tmp_path, capsys):
    out = tmp_path / "deals.yaml"
    args = ["import-appflow", str(FIXTURES / "hubspot_deals_to_s3.json"), "-o", str(out)]
    assert main(args) == 1
    assert (
        "sourceFlowConfig.connectorProfileName: a CustomConnector flow" in capsys.readouterr().err
    )
    assert not out.exists()
    (tmp_path / "connections.yaml").write_text("hubspot_crm:\n  connector: hubspot\n")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "connection 'hubspot_crm' is not in" not in err
    assert "note: connection 'aws_default' is not in" in err
    flow = load_flow_file(out)
    assert (flow.source.connector, flow.source.object) == ("hubspot", "deals")
    assert "#   hubspot_crm:\n#     connector: hubspot\n" in out.read_text()


def test_an_s3_source_exports_as_appflows_s3_source_and_comes_back(tmp_path):
    conversion = imported("s3_to_salesforce_upsert")
    exported = export_file(write_flow(tmp_path, conversion))
    source = exported.result["sourceFlowConfig"]
    assert source == {
        "connectorType": "S3",  # no connector profile: the account's own access
        "sourceConnectorProperties": {
            "S3": {"bucketName": "flowbridge-inbound", "bucketPrefix": "contacts",
                   "s3InputFormatConfig": {"s3InputFileType": "CSV"}}
        },
    }  # fmt: skip
    model = botocore.session.get_session().get_service_model("appflow")
    botocore.validate.validate_parameters(
        json.loads(json.dumps(exported.result)), model.operation_model("CreateFlow").input_shape
    )
    assert (
        imported("s3_to_salesforce_upsert", exported.result).result["source"]
        == (conversion.result["source"])
    )


def test_an_s3_source_appflow_cannot_read_is_refused():
    message = export_refusal(FLOWS / "s3_orders_to_lake.yaml")
    assert "source.format" in message and "CSV and JSON Lines, not parquet" in message
