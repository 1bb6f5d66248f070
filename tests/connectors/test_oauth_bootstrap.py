"""`flowbridge oauth`: the real command, in its own process with every logger at DEBUG, against the
HubSpot, Salesforce and Slack sandboxes. The test is the browser: it follows the printed authorize
URL, the sandbox redirects to the command's loopback listener, and the refresh token the command
stores in the env file then opens the connection. Then the ways it must refuse, and the
sandboxes' own checks of a code (single use, PKCE, redirect_uri, lifetime)."""

import os
import queue
import stat
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import dagster as dg
import pytest
import requests
from dotenv import dotenv_values

from flow_assets.connectors import connection_resource
from flow_assets.connectors.base import ReadRequest
from flow_assets.connectors.errors import AuthError
from flow_assets.connectors.oauth_bootstrap import (
    AuthorizationCodeApp,
    _ignored,
    authorize_url,
    pkce_pair,
)
from flow_assets.sandbox.google_analytics import GoogleAnalyticsSandbox
from flow_assets.sandbox.hubspot import HubSpotSandbox
from flow_assets.sandbox.salesforce import SalesforceSandbox
from flow_assets.sandbox.slack import SlackSandbox
from flow_assets.spec.loading import load_connections

HUBSPOT = {"client_id": "hs-app-id", "client_secret": "hs-app-secret"}
SALESFORCE = {"client_id": "sf-consumer-key", "client_secret": "sf-consumer-secret"}
SLACK = {"client_id": "31.41", "client_secret": "slack-app-secret"}
GOOGLE = {"client_id": "1234.apps.googleusercontent.com", "client_secret": "ga-client-secret"}
CONNECTIONS = """\
crm:
  connector: hubspot
  base_url: ${HS_URL}
  client_id: ${HS_CLIENT_ID}
  client_secret: ${HS_CLIENT_SECRET}
  refresh_token: ${HS_REFRESH_TOKEN}
org:
  connector: salesforce
  login_url: ${SF_URL}
  auth_flow: refresh_token
  client_id: ${SF_CLIENT_ID}
  client_secret: ${SF_CLIENT_SECRET}
  refresh_token: ${SF_REFRESH_TOKEN}
chat:
  connector: slack
  base_url: ${SLACK_URL}
  client_id: ${SLACK_CLIENT_ID}
  client_secret: ${SLACK_CLIENT_SECRET}
  refresh_token: ${SLACK_REFRESH_TOKEN}
  token_store: ${SLACK_TOKEN_STORE}
traffic:
  connector: google_analytics
  property_id: "123456789"
  base_url: ${GA_URL}
  token_url: ${GA_TOKEN_URL}
  client_id: ${GA_CLIENT_ID}
  client_secret: ${GA_CLIENT_SECRET}
  refresh_token: ${GA_REFRESH_TOKEN}
"""
# The command as `flowbridge` runs it, but with every logger at DEBUG on stderr: whatever any
# module logs (urllib3's requests included) is captured and searched for the token.
LAUNCH = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG); "
    "from flow_assets.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def hubspot():
    with HubSpotSandbox(records=30, **HUBSPOT) as server:
        yield server


@pytest.fixture(scope="module")
def salesforce():
    with SalesforceSandbox(records=20, **SALESFORCE) as server:
        yield server


@pytest.fixture(scope="module")
def slack():
    with SlackSandbox(channels=3, users=5, messages=20, **SLACK) as server:
        yield server


@pytest.fixture(scope="module")
def google():
    with GoogleAnalyticsSandbox(**GOOGLE) as server:
        yield server


@pytest.fixture
def project(tmp_path, hubspot, salesforce, slack, google):
    """A project folder whose connections.yaml names the three sandboxes, and the environment
    that `dagster dev` would have besides the env file (no refresh tokens)."""
    (tmp_path / "flow_defs").mkdir()
    (tmp_path / "flow_defs" / "connections.yaml").write_text(CONNECTIONS)
    env = {
        "FLOWBRIDGE_FLOWS_DIR": str(tmp_path / "flow_defs"),
        "HS_URL": hubspot.url, "HS_CLIENT_ID": HUBSPOT["client_id"],
        "HS_CLIENT_SECRET": HUBSPOT["client_secret"],
        "SF_URL": salesforce.url, "SF_CLIENT_ID": SALESFORCE["client_id"],
        "SF_CLIENT_SECRET": SALESFORCE["client_secret"],
        "SLACK_URL": slack.url + "/api", "SLACK_CLIENT_ID": SLACK["client_id"],
        "SLACK_CLIENT_SECRET": SLACK["client_secret"],
        "SLACK_TOKEN_STORE": str(tmp_path / "slack_tokens.json"),
        "GA_URL": google.url, "GA_TOKEN_URL": google.url + "/token",
        "GA_CLIENT_ID": GOOGLE["client_id"],
        "GA_CLIENT_SECRET": GOOGLE["client_secret"],
    }  # fmt: skip
    yield tmp_path, env
    hubspot.authorization_codes.deny = False


class Command:
    """`flowbridge oauth ... --no-browser` in its own process (cwd: the project)."""

    def __init__(self, root: Path, env: dict[str, str], *args: str) -> None:
        self.stderr_file = root / "command.stderr"
        self._stderr = self.stderr_file.open("w")
        environ = {k: v for k, v in os.environ.items() if not k.endswith("_REFRESH_TOKEN")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, "oauth", *args, "--no-browser"],
            cwd=root, env=environ | env | {"PYTHONUNBUFFERED": "1"}, text=True,
            stdout=subprocess.PIPE, stderr=self._stderr,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def authorize_url(self) -> str:
        while (line := self.lines.get(timeout=60)) is not None:
            self.out.append(line)
            if line.startswith("http") and "redirect_uri=" in line:
                return line.strip()
        self.finish()
        pytest.fail(f"no authorize URL printed:\n{''.join(self.out)}\n{self.err}")

    def finish(self) -> int:
        code = self.proc.wait(timeout=60)
        self._stderr.close()
        while (line := self.lines.get(timeout=10)) is not None:
            self.out.append(line)
        self.stdout = "".join(self.out)
        self.err = self.stderr_file.read_text()
        return code


def browse(url: str) -> tuple[str, requests.Response]:
    """What a browser does after "Allow": the authorize page answers 302 to the redirect URI,
    which is followed. The Location it was sent to, and the callback's answer."""
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    return location, requests.get(location, timeout=10)


def query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


def open_connection(root: Path, env: dict[str, str], name: str, monkeypatch, **override: str):
    """The connection as a run opens it: connections.yaml's resource, its ${VARS} read from
    the environment the way `dagster dev` sets it from the env file."""
    for key, value in {**env, **dotenv_values(root / ".env"), **override}.items():
        monkeypatch.setenv(key, value)
    file = root / "flow_defs" / "connections.yaml"
    resource = connection_resource(name, load_connections(file)[name], file)
    with dg.build_resources({"c": resource}) as built:
        return built.c.open(max_attempts=1)


def assert_secret_kept(command: Command, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in command.stdout
        assert secret not in command.err


def test_hubspot_refresh_token_bootstrap(project, hubspot, monkeypatch):
    root, env = project
    dotenv = root / ".env"
    dotenv.write_text("# local settings\nOTHER_SETTING='keep me'\nHS_REFRESH_TOKEN=stale\n")
    dotenv.chmod(0o644)
    command = Command(root, env, "crm")
    url = command.authorize_url()
    sent = query(url)
    assert url.startswith(hubspot.url + "/oauth/authorize?")
    assert sent["redirect_uri"].startswith("http://localhost:")
    assert sent["code_challenge_method"] == "S256" and len(sent["state"]) >= 32
    assert "crm.objects.deals.read" in sent["scope"].split(" ")
    location, page = browse(url)
    assert page.status_code == 200 and "Authorized" in page.text
    assert command.finish() == 0, command.err

    token = dotenv_values(dotenv)["HS_REFRESH_TOKEN"]
    assert token not in ("stale", hubspot.refresh_token) and token.startswith("na1-")
    assert dotenv_values(dotenv)["OTHER_SETTING"] == "keep me"
    assert "# local settings" in dotenv.read_text()
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    assert ".env" in (root / ".gitignore").read_text().splitlines()
    assert "HS_REFRESH_TOKEN" in command.stdout and str(dotenv) in command.stdout
    code = query(location)["code"]
    assert_secret_kept(command, token, code)
    assert "DEBUG" in command.err  # the loggers were on: their silence about the token counts

    client = open_connection(root, env, "crm", monkeypatch)
    client.check()
    page = next(client.read(ReadRequest(object="contacts", fields=["id", "email"], page_size=10)))
    assert page.height == 10
    forged = open_connection(root, env, "crm", monkeypatch, HS_REFRESH_TOKEN=token + "0")
    with pytest.raises(AuthError):  # the check can fail: a token the sandbox did not issue
        forged.check()

    # The code the command exchanged is spent: a second exchange is refused.
    again = requests.post(hubspot.url + "/oauth/v1/token", timeout=10, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": sent["redirect_uri"],
        **HUBSPOT})  # fmt: skip
    assert again.status_code == 400
    assert again.json() == {"status": "BAD_AUTH_CODE", "message": "authorization code already used"}


def test_salesforce_refresh_token_bootstrap(project, salesforce, monkeypatch):
    root, env = project
    command = Command(root, env, "org", "--scope", "api refresh_token")
    url = command.authorize_url()
    assert url.startswith(salesforce.url + "/services/oauth2/authorize?")
    assert query(url)["scope"] == "api refresh_token"
    _, page = browse(url)
    assert page.status_code == 200
    assert command.finish() == 0, command.err
    dotenv = root / ".env"
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600  # created so, never readable by others
    token = dotenv_values(dotenv)["SF_REFRESH_TOKEN"]
    assert token.startswith("5Aep")
    assert_secret_kept(command, token)

    client = open_connection(root, env, "org", monkeypatch)
    client.check()
    pages = client.read(ReadRequest(object="Opportunity", fields=["Id", "Amount"], page_size=200))
    assert next(pages).height == 20


def test_google_analytics_asks_for_offline_access(project, google, monkeypatch):
    """Google gives a refresh token only with access_type=offline (and again only with
    prompt=consent); the stored token then reads the property's report."""
    root, env = project
    command = Command(root, env, "traffic")
    url = command.authorize_url()
    sent = query(url)
    assert url.startswith(google.url + "/o/oauth2/v2/auth?")
    assert (sent["access_type"], sent["prompt"]) == ("offline", "consent")
    assert sent["scope"] == "https://www.googleapis.com/auth/analytics.readonly"
    assert sent["code_challenge_method"] == "S256"
    _, page = browse(url)
    assert page.status_code == 200
    assert command.finish() == 0, command.err
    token = dotenv_values(root / ".env")["GA_REFRESH_TOKEN"]
    assert token.startswith("1//sandbox-") and token != google.refresh_token
    assert_secret_kept(command, token)

    client = open_connection(root, env, "traffic", monkeypatch)
    request = ReadRequest(object="report", fields=["date", "sessions"], page_size=5)
    assert next(client.read(request)).height == 5
    forged = open_connection(root, env, "traffic", monkeypatch, GA_REFRESH_TOKEN=token + "0")
    with pytest.raises(AuthError):
        forged.check()


def test_slack_install_with_token_rotation(project, slack, monkeypatch):
    """Slack: comma-separated bot scopes, an ok:true answer; the token store, which a run reads
    before the refresh token, gets the new pair instead of keeping an older one."""
    root, env = project
    Path(env["SLACK_TOKEN_STORE"]).write_text('{"refresh_token": "xoxe-1-revoked"}')
    command = Command(root, env, "chat", "--env-file", "secrets/slack.env")
    url = command.authorize_url()
    assert url.startswith(slack.url + "/oauth/v2/authorize?")
    assert query(url)["scope"] == "channels:read,channels:history,users:read"
    browse(url)
    assert command.finish() == 0, command.err
    dotenv = root / "secrets" / "slack.env"
    token = dotenv_values(dotenv)["SLACK_REFRESH_TOKEN"]
    assert token.startswith("xoxe-1-") and "updated token_store" in command.stdout
    assert "secrets/slack.env" in (root / ".gitignore").read_text()
    assert_secret_kept(command, token)

    (root / ".env").symlink_to(dotenv)  # where open_connection reads the variables from
    client = open_connection(root, env, "chat", monkeypatch)
    channels = next(client.read(ReadRequest(object="channels", fields=["id", "name"])))
    assert channels.height == 3


def test_a_wrong_state_is_refused(project):
    root, env = project
    command = Command(root, env, "crm")
    location = requests.get(command.authorize_url(), allow_redirects=False, timeout=10)
    forged = query(location.headers["Location"]) | {"state": "forged-by-another-page"}
    callback = location.headers["Location"].split("?")[0] + "?" + urlencode(forged)
    assert requests.get(callback, timeout=10).status_code == 400
    assert command.finish() == 1
    assert "state does not match" in command.err and "nothing was stored" in command.err
    assert not (root / ".env").exists()


def test_access_denied_is_reported(project, hubspot):
    root, env = project
    hubspot.authorization_codes.deny = True  # the user clicks "Deny"
    command = Command(root, env, "crm")
    location, page = browse(command.authorize_url())
    assert query(location)["error"] == "access_denied"
    assert "Not authorized" in page.text
    assert command.finish() == 1
    assert "access was denied in the browser (error=access_denied)" in command.err
    assert not (root / ".env").exists()


def test_no_answer_within_the_timeout(project):
    root, env = project
    command = Command(root, env, "crm", "--timeout", "0.5")
    command.authorize_url()
    assert command.finish() == 1
    assert "no answer reached http://localhost:" in command.err
    assert not (root / ".env").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("refresh_token: na1-pasted-token", "'refresh_token' is a secret and must not be written"),
        (
            "refresh_token: ${HS_REFRESH_TOKEN:-}",
            "crm.refresh_token is not an ${ENV_VAR} reference",
        ),
        ("access_token: ${HS_PRIVATE_APP_TOKEN}", "crm has no refresh_token setting"),
    ],
)
def test_a_refresh_token_that_is_not_a_variable_is_refused(project, setting, message):
    root, env = project
    lines = CONNECTIONS.split("org:")[0].replace("refresh_token: ${HS_REFRESH_TOKEN}", setting)
    (root / "flow_defs" / "connections.yaml").write_text(lines)
    command = Command(root, env, "crm")
    assert command.finish() == 1
    assert message in command.err and "authorize?" not in command.stdout
    assert not (root / ".env").exists()


def test_a_connector_without_the_grant_is_refused(project):
    root, env = project
    (root / "flow_defs" / "connections.yaml").write_text(
        "desk:\n  connector: zendesk\n  base_url: http://127.0.0.1:9\n"
        "  client_id: x\n  client_secret: ${ZD_SECRET}\n"
    )
    command = Command(root, env, "desk")
    assert command.finish() == 1
    assert "connector 'zendesk' has no OAuth authorization-code bootstrap" in command.err
    assert "connectors that do: " in command.err and "hubspot, salesforce" in command.err


# --- the sandboxes' side of the grant ------------------------------------------------------

SANDBOXES = {
    "hubspot": ("/oauth/authorize", "/oauth/v1/token", HUBSPOT),
    "salesforce": ("/services/oauth2/authorize", "/services/oauth2/token", SALESFORCE),
}
REDIRECT = "http://127.0.0.1:9/callback"  # never followed: the Location is read


@pytest.fixture(params=list(SANDBOXES))
def vendor(request, hubspot, salesforce):
    server = {"hubspot": hubspot, "salesforce": salesforce}[request.param]
    authorize, token, app = SANDBOXES[request.param]
    yield server, server.url + authorize, server.url + token, app
    server.authorization_codes.lifetime = 600.0


def issue_code(vendor, challenge: str | None = None, **extra: str) -> str:
    server, authorize, _, app = vendor
    params = {"response_type": "code", "client_id": app["client_id"], "redirect_uri": REDIRECT,
              "state": "s1"} | extra  # fmt: skip
    if challenge:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    answer = requests.get(authorize, params=params, allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    back = query(answer.headers["Location"])
    assert answer.headers["Location"].startswith(REDIRECT + "?") and back["state"] == "s1"
    return back["code"]


def redeem(vendor, code: str, verifier: str | None = None, redirect_uri: str = REDIRECT):
    _, _, token, app = vendor
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, **app}
    if verifier:
        form["code_verifier"] = verifier
    return requests.post(token, data=form, timeout=10)


def refused(answer: requests.Response, words: str) -> bool:
    body = answer.json()
    return answer.status_code == 400 and words in (body.get("message") or body["error_description"])


def test_a_code_is_single_use(vendor):
    verifier, challenge = pkce_pair()
    code = issue_code(vendor, challenge)
    first = redeem(vendor, code, verifier)
    assert first.status_code == 200 and first.json()["refresh_token"]
    assert refused(redeem(vendor, code, verifier), "already used")


def test_a_wrong_code_verifier_is_refused(vendor):
    verifier, challenge = pkce_pair()
    code = issue_code(vendor, challenge)
    other, _ = pkce_pair()
    assert refused(redeem(vendor, code, other), "code_verifier does not match")
    assert refused(redeem(vendor, code, verifier), "already used")  # a refusal spends it too
    assert refused(redeem(vendor, issue_code(vendor, challenge)), "code_verifier missing")


def test_the_redirect_uri_must_match_and_codes_expire(vendor):
    verifier, challenge = pkce_pair()
    code = issue_code(vendor, challenge)
    assert refused(redeem(vendor, code, verifier, "http://127.0.0.1:9/other"), "redirect_uri")
    vendor[0].authorization_codes.lifetime = 0.0
    assert refused(redeem(vendor, issue_code(vendor, challenge), verifier), "expired")


def test_the_authorize_endpoint_refuses_what_it_must(vendor):
    _, authorize, _, app = vendor
    base = {"response_type": "code", "client_id": app["client_id"], "redirect_uri": REDIRECT,
            "state": "s2"}  # fmt: skip

    def ask(**params: str) -> requests.Response:
        return requests.get(authorize, params=base | params, allow_redirects=False, timeout=10)

    # Not redirected (RFC 6749 §4.1.2.1): an unknown client, or a redirect URI that is http
    # to a host other than a loopback one.
    assert ask(client_id="someone-else").status_code == 400
    assert ask(redirect_uri="http://evil.example/callback").status_code == 400
    plain = ask(code_challenge="x" * 43, code_challenge_method="plain")
    assert query(plain.headers["Location"]) == {
        "error": "invalid_request", "error_description": "code_challenge_method must be S256",
        "state": "s2",
    }  # fmt: skip
    denied = query(ask(sandbox_deny="1").headers["Location"])
    assert denied["error"] == "access_denied" and "code" not in denied


def test_the_authorize_url_carries_each_parameter_once():
    app = AuthorizationCodeApp(
        "https://accounts.example/auth?hd=example.com", "https://accounts.example/token", "id",
        "secret", scopes=("a.read", "b.read"), extra_params={"access_type": "offline"},
    )  # fmt: skip
    url = authorize_url(app, "http://127.0.0.1:5/callback", "st", "c" * 43)
    assert url.startswith("https://accounts.example/auth?hd=example.com&response_type=code&")
    assert "scope=a.read%20b.read" in url and "secret" not in url
    assert query(url) == {
        "hd": "example.com", "response_type": "code", "client_id": "id",
        "redirect_uri": "http://127.0.0.1:5/callback", "scope": "a.read b.read", "state": "st",
        "code_challenge": "c" * 43, "code_challenge_method": "S256", "access_type": "offline",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("gitignore", "ignored"),
    [
        ("", False),
        (".env\n", True),
        ("/.env\n", True),
        (".env*\n", True),
        ("*.env\n", True),
        (".env\n!.env\n", False),
        ("# .env\nsecrets/.env\n", False),
        ("data/\n", False),
    ],
)
def test_gitignore_patterns(gitignore, ignored):
    assert _ignored(".env", gitignore.splitlines()) is ignored
