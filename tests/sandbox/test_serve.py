"""`flowbridge sandbox` serves every bundled sandbox; the connections of connections.yaml reach
each with the credentials the Makefile exports."""

import dagster as dg

from flow_assets.connectors.hubspot import HubSpotConnection
from flow_assets.connectors.salesforce import SalesforceConnection
from flow_assets.connectors.servicenow import ServiceNowConnection
from flow_assets.connectors.slack import SlackConnection
from flow_assets.connectors.zendesk import ZendeskConnection
from flow_assets.sandbox.serve import SANDBOXES, start_all

# As the Makefile exports them for `make ui`.
CLIENT = {"client_id": "flowbridge-sandbox", "client_secret": "sandbox-secret"}


def test_every_sandbox_starts_and_answers_its_connection(tmp_path):
    sandboxes = start_all(0, 50, 7)
    try:
        assert list(sandboxes) == list(SANDBOXES)
        connections = {
            "Salesforce": SalesforceConnection(login_url=sandboxes["Salesforce"].url, **CLIENT),
            "HubSpot": HubSpotConnection(base_url=sandboxes["HubSpot"].url,
                                         refresh_token="na1-sandbox-refresh-token", **CLIENT),
            "Zendesk": ZendeskConnection(base_url=sandboxes["Zendesk"].url, **CLIENT),
            "ServiceNow": ServiceNowConnection(
                base_url=sandboxes["ServiceNow"].url, username="flowbridge.integration",
                password="sandbox-password", **CLIENT),
            "Slack": SlackConnection(
                base_url=sandboxes["Slack"].url + "/api", client_id="1111.2222",
                client_secret="sandbox-client-secret", refresh_token="xoxe-1-sandbox-refresh",
                token_store=str(tmp_path / "slack_tokens.json")),
        }  # fmt: skip
        for connection in connections.values():
            with dg.build_resources({"c": connection}) as resources:
                resources.c.open().check()  # raises naming the connection if refused
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()
