"""The SAP OData connector's acceptance harnesses: one per protocol version, the same connector.

Both connect as an OAuth client (client credentials, as an SAP BTP service key gives them), so
the "expire_token" fault is what happens when an access token outlives its expires_in: a 401
on the next call, survived by asking the token endpoint again. (Basic auth does not expire; a
401 on it is final, see tests/connectors/test_sap_odata.py.) page_size 250 is above the
sandbox's server page (100), so every window is also paged by the server's next links.
"""

from flow_assets.connectors.sap_odata import SapODataConnection
from flow_assets.sandbox.sap_odata import V2_ROOT, V4_ROOT, SapODataSandbox
from tests.acceptance.harness import Harness

CLIENT = {"client_id": "sb-acceptance!t7", "client_secret": "acceptance-secret"}


def connection(root: str):
    def build(sandbox: SapODataSandbox, valid: bool) -> SapODataConnection:
        secret = CLIENT["client_secret"] if valid else "wrong-secret"
        return SapODataConnection(service_url=sandbox.url + root, sap_client="100",
                                  token_url=sandbox.url + "/oauth/token",
                                  client_id=CLIENT["client_id"], client_secret=secret,
                                  connection_name="acceptance")  # fmt: skip

    return build


def inject(entity_set: str):
    def fault(sandbox: SapODataSandbox, kind: str, after: int) -> None:
        sandbox.inject(kind, count=1, path_contains=f"/{entity_set}?", after=after,
                       retry_after=0.1)  # fmt: skip

    return fault


def harness(name: str, root: str, entity_set: str) -> Harness:
    return Harness(
        connector="sap_odata",
        sandbox=lambda: SapODataSandbox(records=700, **CLIENT),
        connection=connection(root),
        object=entity_set,
        cursor_field="LastChangeDateTime",
        key="SalesOrder",
        truth=lambda sandbox: sandbox.frame(entity_set),
        inject=inject(entity_set),
        page_size=250,
        name=name,
    )


SAP_ODATA_V2 = harness("sap_odata_v2", V2_ROOT, "A_SalesOrder")
SAP_ODATA_V4 = harness("sap_odata_v4", V4_ROOT, "SalesOrder")
