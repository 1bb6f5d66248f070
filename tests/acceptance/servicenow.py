"""The ServiceNow connector's acceptance harness.

It connects as an OAuth client with the password grant, so the "expire_token" fault is what an
instance does when an access token outlives its lifetime: a 401 on the next call, which the
client survives by trading its refresh token at /oauth_token.do for a new access token. (Basic
auth does not expire; a 401 on it is final, see tests/connectors/test_servicenow.py.)
"""

from flow_assets.connectors.servicenow import ServiceNowConnection
from flow_assets.sandbox.servicenow import ServiceNowSandbox
from tests.acceptance.harness import Harness

CREDENTIALS = {
    "username": "acceptance.user",
    "password": "acceptance-password",
    "client_id": "acceptance",
    "client_secret": "acceptance-secret",
}


def connection(sandbox: ServiceNowSandbox, valid: bool) -> ServiceNowConnection:
    secret = CREDENTIALS["client_secret"] if valid else "wrong-secret"
    return ServiceNowConnection(base_url=sandbox.url, username=CREDENTIALS["username"],
                                password=CREDENTIALS["password"],
                                client_id=CREDENTIALS["client_id"], client_secret=secret,
                                connection_name="acceptance")  # fmt: skip


def inject(sandbox: ServiceNowSandbox, fault: str, after: int) -> None:
    sandbox.inject(fault, count=1, path_contains="/api/now/table/incident", after=after,
                   retry_after=0.1)  # fmt: skip


SERVICENOW = Harness(
    connector="servicenow",
    sandbox=lambda: ServiceNowSandbox(records=600, **CREDENTIALS),
    connection=connection,
    object="incident",
    cursor_field="sys_updated_on",
    key="sys_id",
    truth=lambda sandbox: sandbox.frame("incident"),
    inject=inject,
    page_size=100,
)
