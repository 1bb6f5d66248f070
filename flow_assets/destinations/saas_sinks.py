"""SaaS destinations by connector name: the IO manager each connection of that connector gets."""

from __future__ import annotations

from flow_assets.destinations.hubspot_sink import HubSpotIOManager
from flow_assets.destinations.saas_sink import SaasSinkIOManager
from flow_assets.destinations.salesforce_sink import SalesforceIOManager
from flow_assets.destinations.zendesk_sink import ZendeskIOManager

SAAS_SINKS: dict[str, type[SaasSinkIOManager]] = {
    "salesforce": SalesforceIOManager,
    "hubspot": HubSpotIOManager,
    "zendesk": ZendeskIOManager,
}
