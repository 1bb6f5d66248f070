"""`flowbridge sandbox`: every bundled SaaS sandbox in one process, on consecutive ports from
--port (in SANDBOXES' order), with the credentials the Makefile exports for connections.yaml's
`*_sandbox` connections. Stops on SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from flow_assets.sandbox.google_analytics import GoogleAnalyticsSandbox
from flow_assets.sandbox.hubspot import HubSpotSandbox
from flow_assets.sandbox.salesforce import SalesforceSandbox
from flow_assets.sandbox.sap_odata import SapODataSandbox
from flow_assets.sandbox.servicenow import ServiceNowSandbox
from flow_assets.sandbox.slack import SlackSandbox
from flow_assets.sandbox.zendesk import ZendeskSandbox

# name -> builder(port, records, seed); the order gives each its port offset.
SANDBOXES: dict[str, Callable[[int, int, int], Any]] = {
    "Salesforce": lambda port, records, seed: SalesforceSandbox(port, records, seed),
    "HubSpot": lambda port, records, seed: HubSpotSandbox(port, records, seed),
    "Zendesk": lambda port, records, seed: ZendeskSandbox(port, records, seed),
    "ServiceNow": lambda port, records, seed: ServiceNowSandbox(port, records, seed),
    "Slack": lambda port, records, seed: SlackSandbox(port, messages=records, seed=seed),
    "SAP OData": lambda port, records, seed: SapODataSandbox(port, records, seed),
    "Google Analytics": lambda port, records, seed: GoogleAnalyticsSandbox(port, seed=seed),
}

# The variables connections.yaml's `*_sandbox` connections take their addresses from, each with
# the path the connection adds to the sandbox's URL.
URL_VARIABLES: dict[str, dict[str, str]] = {
    "Salesforce": {"SALESFORCE_SANDBOX_URL": ""},
    "HubSpot": {"HUBSPOT_SANDBOX_URL": ""},
    "Zendesk": {"ZENDESK_SANDBOX_URL": ""},
    "ServiceNow": {"SERVICENOW_SANDBOX_URL": ""},
    "Slack": {"SLACK_SANDBOX_URL": "/api"},
    "SAP OData": {"SAP_SANDBOX_SERVICE_URL": "/sap/opu/odata/sap/API_SALES_ORDER_SRV"},
    "Google Analytics": {"GA4_SANDBOX_URL": "", "GA4_SANDBOX_TOKEN_URL": "/token"},
}


def url_environment(started: dict[str, Any]) -> dict[str, str]:
    """The URL variables pointing connections.yaml's sandbox connections at `started`."""
    return {
        var: started[name].url + path
        for name, variables in URL_VARIABLES.items()
        for var, path in variables.items()
    }


def start_all(port: int, records: int, seed: int) -> dict[str, Any]:
    """Start every sandbox (port 0: each on a free port); stops those started if one fails."""
    started: dict[str, Any] = {}
    try:
        for offset, (name, build) in enumerate(SANDBOXES.items()):
            started[name] = build(port + offset if port else 0, records, seed).start()
    except BaseException:
        for sandbox in started.values():
            sandbox.stop()
        raise
    return started


def serve_all(port: int, records: int, seed: int) -> int:
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    sandboxes = start_all(port, records, seed)
    try:
        for name, sandbox in sandboxes.items():
            print(f"{name} sandbox listening on {sandbox.url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
