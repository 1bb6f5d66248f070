"""`flowbridge oauth <connection>`: a connection's refresh token from the OAuth 2.0
authorization-code grant (RFC 6749 §4.1) with PKCE (RFC 7636) and a one-shot loopback redirect
(RFC 8252), written to the env file its ${VARIABLE} is read from. Tokens are never printed or
logged.

The vendor facts (authorize and token URLs, default scopes, PKCE, the redirect host) come from
the connection: `authorization_code_app()` on HubSpotConnection, SalesforceConnection and
SlackConnection. Everything else here is vendor-neutral."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import html
import os
import re
import secrets
import threading
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from pydantic import ValidationError

from flow_assets.connectors.errors import ConnectorError
from flow_assets.connectors.http import HttpClient, RetryPolicy, parse_json
from flow_assets.environment import env_file as project_env_file
from flow_assets.spec.env import MissingEnvironmentVariable, env_name, resolve
from flow_assets.spec.errors import did_you_mean
from flow_assets.spec.loading import CONNECTIONS_FILE, load_connections
from flow_assets.spec.models import ConnectionSpec

CALLBACK_PATH = "/callback"
DEFAULT_TIMEOUT = 300.0  # seconds the user has to click "Allow"
SETTING = "refresh_token"  # the connection setting whose ${VARIABLE} receives the token


class BootstrapError(Exception):
    """The bootstrap stopped; the message says why and what to do. It never holds a token."""


@dataclass(frozen=True)
class AuthorizationCodeApp:
    """How one vendor runs the authorization-code grant for one connection's OAuth app."""

    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    scope_separator: str = " "  # Slack separates scopes with commas
    pkce: bool = True  # send code_challenge (S256) and code_verifier
    # RFC 8252 §7.3 prefers the loopback IP; vendors that refuse IPs in redirect URIs (HubSpot)
    # declare "localhost". The listener binds 127.0.0.1 either way.
    redirect_host: str = "127.0.0.1"
    no_refresh_token_hint: str = "check the OAuth app's settings"
    # More authorize parameters a vendor needs for a refresh token (Google: access_type=offline
    # and prompt=consent).
    extra_params: Mapping[str, str] = field(default_factory=dict)
    # The vendor's own reading of a 200 answer (Slack says ok:false in a 200); raises
    # ConnectorError to refuse it.
    check_answer: Callable[[dict[str, Any]], None] | None = None
    # Done with the whole token answer once the refresh token is stored (Slack: its token
    # store); returns a line to print, never a token.
    after_store: Callable[[dict[str, Any]], str | None] | None = None


@dataclass(frozen=True)
class Redirect:
    """The query of the request that reached the redirect URI."""

    params: dict[str, str]


def pkce_pair() -> tuple[str, str]:
    """A fresh code_verifier (86 characters of [A-Za-z0-9_-]) and its S256 code_challenge."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def authorize_url(
    app: AuthorizationCodeApp, redirect_uri: str, state: str, challenge: str | None
) -> str:
    params = {"response_type": "code", "client_id": app.client_id, "redirect_uri": redirect_uri}
    if app.scopes:
        params["scope"] = app.scope_separator.join(app.scopes)
    params["state"] = state
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    params |= app.extra_params
    joiner = "&" if "?" in app.authorize_url else "?"
    # quote, not quote_plus: HubSpot documents scopes separated by %20
    return app.authorize_url + joiner + urlencode(params, quote_via=quote)


class CallbackServer:
    """A one-shot HTTP listener on 127.0.0.1 for the redirect: the first request to
    CALLBACK_PATH is kept and answered with a page saying to go back to the terminal."""

    def __init__(self, port: int = 0, expected_state: str = "") -> None:
        self.expected_state = expected_state
        self.redirect: Redirect | None = None
        self.arrived = threading.Event()
        self._server = _Listener(("127.0.0.1", port), _CallbackHandler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
            name="oauth-callback",
        )  # fmt: skip

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> CallbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def wait(self, timeout: float) -> Redirect | None:
        self.arrived.wait(timeout)
        return self.redirect


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    owner: CallbackServer


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _Listener
    timeout = 30  # an idle connection (a browser's preconnect) does not hold a thread for long

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        owner = self.server.owner
        if parts.path != CALLBACK_PATH or owner.arrived.is_set():
            self._page(404, "Not found", "This is flowbridge's one-shot OAuth redirect listener.")
            return
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if not secrets.compare_digest(params.get("state", ""), owner.expected_state):
            self._page(400, "Refused", "The answer's state does not match: nothing was stored.")
        elif "error" in params:
            self._page(200, "Not authorized", f"The authorization server answered "
                       f"{params['error']}. Return to the terminal.")  # fmt: skip
        else:
            self._page(200, "Authorized", "Flowbridge received the authorization; return to "
                       "the terminal. You can close this tab.")  # fmt: skip
        owner.redirect = Redirect(params)
        owner.arrived.set()

    def _page(self, status: int, title: str, text: str) -> None:
        body = (f"<!doctype html><title>{html.escape(title)}</title>"
                f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>").encode()  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line carries the authorization code: never written anywhere


def check_redirect(redirect: Redirect | None, state: str, timeout: float, where: str) -> str:
    """The authorization code the redirect carries; BootstrapError for anything else."""
    if redirect is None:
        raise BootstrapError(f"no answer reached {where} within {timeout:g} s; run the command "
                             "again and finish in the browser (or pass --timeout)")  # fmt: skip
    params = redirect.params
    if not secrets.compare_digest(params.get("state", ""), state):
        raise BootstrapError("refused the redirect: its state does not match the one sent "
                             "(a forged or stale answer; cross-site request forgery protection); "
                             "nothing was stored; run the command again")  # fmt: skip
    if params.get("error") == "access_denied":
        raise BootstrapError("access was denied in the browser (error=access_denied): nothing "
                             "was stored; run the command again and click Allow")  # fmt: skip
    if "error" in params:
        detail = params.get("error_description")
        raise BootstrapError(f"the authorization server answered error={params['error']}"
                             + (f" ({detail})" if detail else "")
                             + "; check the OAuth app's redirect URL and scopes")  # fmt: skip
    code = params.get("code")
    if not code:
        raise BootstrapError("the redirect carried neither a code nor an error")
    return code


def exchange_code(
    app: AuthorizationCodeApp, code: str, redirect_uri: str, verifier: str | None
) -> dict[str, Any]:
    """The token endpoint's answer to grant_type=authorization_code; it holds a refresh token."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": app.client_id, "client_secret": app.client_secret}  # fmt: skip
    if verifier is not None:
        form["code_verifier"] = verifier
    # One attempt: a code is single use, so a repeat after a lost answer would be refused.
    client = HttpClient(app.token_url, retry=RetryPolicy(max_attempts=1))
    try:
        body = client.request("POST", app.token_url, parse=parse_json, data=form)
        if not isinstance(body, dict):
            raise ConnectorError(f"POST {urlsplit(app.token_url).path}: not a JSON object")
        if app.check_answer is not None:
            app.check_answer(body)
    except ConnectorError as exc:
        raise BootstrapError(f"the token endpoint refused the authorization code: {exc}; "
                             "run the command again") from None  # fmt: skip
    if not body.get("refresh_token"):
        raise BootstrapError(f"the token endpoint answered without a refresh_token; "
                             f"{app.no_refresh_token_hint}")  # fmt: skip
    return body


def obtain_tokens(
    app: AuthorizationCodeApp,
    *,
    port: int = 0,
    open_browser: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the grant: listen, send the user to the authorize URL, wait, exchange the code."""
    state = secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair() if app.pkce else (None, None)
    try:
        listener = CallbackServer(port, state)
    except OSError as exc:
        raise BootstrapError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); pass "
                             "another --port") from None  # fmt: skip
    with listener:
        redirect_uri = f"http://{app.redirect_host}:{listener.port}{CALLBACK_PATH}"
        url = authorize_url(app, redirect_uri, state, challenge)
        say(f"Waiting up to {timeout:g} s for the redirect to {redirect_uri} (the OAuth app must "
            "list this redirect URL). Open this URL in a browser and allow access:")  # fmt: skip
        say(url)
        if open_browser and not webbrowser.open(url):
            say("(no browser could be opened here: open the URL above yourself)")
        code = check_redirect(listener.wait(timeout), state, timeout, redirect_uri)
    return exchange_code(app, code, redirect_uri, verifier)


# --- where the token goes ----------------------------------------------------------------


def refresh_token_variable(connection: str, settings: Mapping[str, Any], file: Path) -> str:
    """The NAME of the connection's `refresh_token: ${NAME}`; BootstrapError if it is not one."""
    value = settings.get(SETTING)
    suggestion = f"{connection.upper()}_REFRESH_TOKEN"
    if value is None:
        raise BootstrapError(f"{file}: {connection} has no {SETTING} setting: add "
                             f"`{SETTING}: ${{{suggestion}}}` so the token has a variable to go "
                             "to")  # fmt: skip
    name = env_name(value)
    if name is None:
        raise BootstrapError(f"{file}: {connection}.{SETTING} is not an ${{ENV_VAR}} reference: "
                             f"write `{SETTING}: ${{{suggestion}}}` (no default, no literal) and "
                             "run again; the token is stored in that variable, never in "
                             "connections.yaml")  # fmt: skip
    return name


def write_env_var(path: Path, name: str, value: str) -> bool:
    """Set NAME=value in a dotenv file (replacing NAME's line, keeping every other line), created
    or left readable by its owner only (0600). True when the file was created."""
    created = not path.exists()
    lines = [] if created else path.read_text(encoding="utf-8").splitlines()
    assignment = re.compile(rf"^(\s*(?:export\s+)?){re.escape(name)}\s*=")
    out: list[str] = []
    written = False
    for line in lines:
        if m := assignment.match(line):
            if not written:
                out.append(f"{m[1]}{name}={_dotenv_quote(value)}")
                written = True
            continue  # a second assignment of NAME would win over the new one
        out.append(line)
    if not written:
        out.append(f"{name}={_dotenv_quote(value)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("\n".join(out) + "\n")
        os.chmod(partial, 0o600)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return created


def _dotenv_quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.~+/=:@%!*-]*", value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"  # single quotes: dotenv takes the value literally
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def ensure_gitignored(root: Path, env_file: Path) -> str | None:
    """Add the env file to root/.gitignore unless a pattern there already ignores it; the
    pattern added, or None. Files outside root are left to the user."""
    try:
        relative = env_file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None
    gitignore = root / ".gitignore"
    text = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    if _ignored(relative, text.splitlines()):
        return None
    prefix = "" if not text or text.endswith("\n") else "\n"
    with gitignore.open("a", encoding="utf-8") as handle:
        handle.write(f"{prefix}# secrets written by flowbridge oauth\n{relative}\n")
    return relative


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .gitignore lines ignore the file at `relative` (the last matching line wins)."""
    ignored = False
    name = relative.rsplit("/", 1)[-1]
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#") or line.endswith("/"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!")
        if "/" in pattern.strip("/") or pattern.startswith("/"):
            hit = fnmatch.fnmatchcase(relative, pattern.lstrip("/"))
        else:
            hit = fnmatch.fnmatchcase(name, pattern)
        if hit:
            ignored = not negated
    return ignored


# --- the command ---------------------------------------------------------------------------


def bootstrap(
    connection: str,
    flows_dir: Path,
    *,
    env_file: Path | None = None,
    port: int = 0,
    open_browser: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    scopes: list[str] | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """`flowbridge oauth`: the whole bootstrap of one connection of flows_dir/connections.yaml;
    the env file written. The env file defaults to .env in the project root (flows_dir's
    parent), which `dagster dev` loads."""
    # Here, not at the top: the connector modules import this one for AuthorizationCodeApp.
    from flow_assets.connectors import CONNECTION_TYPES, connection_resource

    file = flows_dir / CONNECTIONS_FILE
    if not file.exists():
        raise BootstrapError(f"{file}: no connections file here (set FLOWBRIDGE_FLOWS_DIR?)")
    connections = load_connections(file)  # FlowFileError names each problem
    spec = connections.get(connection)
    if spec is None:
        raise BootstrapError(f"{file}: no connection '{connection}'"
                             f"{did_you_mean(connection, connections)}")  # fmt: skip
    cls = CONNECTION_TYPES.get(spec.connector)
    if cls is None or not hasattr(cls, "authorization_code_app"):
        able = sorted(
            k for k, c in CONNECTION_TYPES.items() if hasattr(c, "authorization_code_app")
        )
        raise BootstrapError(f"{file}: {connection}: connector '{spec.connector}' has no OAuth "
                             f"authorization-code bootstrap; connectors that do: "
                             f"{', '.join(able)}")  # fmt: skip
    variable = refresh_token_variable(connection, spec.settings, file)
    # The connection as it will be without its refresh token, which is what is being fetched.
    others = {k: v for k, v in spec.settings.items() if k != SETTING}
    connection_resource(connection, ConnectionSpec(connector=spec.connector, **others), file)
    try:
        values = {k: resolve(v, f"{file}: {connection}.{k}") for k, v in others.items()}
    except MissingEnvironmentVariable as exc:
        raise BootstrapError(str(exc)) from None
    try:
        app = cls(connection_name=connection, **values).authorization_code_app()
    except ValidationError as exc:  # locations and messages only: an input may be a secret
        wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BootstrapError(f"{file}: {connection}: {wrong}") from None
    except ConnectorError as exc:
        raise BootstrapError(str(exc)) from None
    if scopes:
        app = replace(
            app, scopes=tuple(s for item in scopes for s in re.split(r"[\s,]+", item) if s)
        )
    answer = obtain_tokens(app, port=port, open_browser=open_browser, timeout=timeout, say=say)
    root = flows_dir.parent
    target = env_file or project_env_file(flows_dir)
    created = write_env_var(target, variable, answer["refresh_token"])
    say(f"{'created' if created else 'updated'} {target}: {variable} now holds the refresh token "
        f"of connection '{connection}' (file mode 600)")  # fmt: skip
    if added := ensure_gitignored(root, target):
        say(f"added {added} to {root / '.gitignore'}")
    if app.after_store is not None and (line := app.after_store(answer)):
        say(line)
    return target
