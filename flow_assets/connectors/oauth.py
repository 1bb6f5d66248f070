"""OAuth 2.0 token handling (client credentials, refresh token, password grants) for HttpClient."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import requests

from flow_assets.connectors.errors import AuthError, ConnectorError
from flow_assets.connectors.http import (
    Answer,
    HttpClient,
    RetryPolicy,
    TransientError,
    parse_json,
)


@dataclass
class OAuth2:
    """Fetches a bearer token on first use and again whenever the API says it expired."""

    token_url: str
    grant: dict[str, str]  # grant_type and its parameters; holds secrets, so never logged
    connection: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    session: requests.Session = field(default_factory=requests.Session)
    access_token: str | None = field(default=None, repr=False)
    token_response: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __repr__(self) -> str:
        return f"OAuth2(token_url={self.token_url!r}, grant_type={self.grant.get('grant_type')!r})"

    def headers(self) -> dict[str, str]:
        if self.access_token is None:
            self.refresh()
        return {"Authorization": f"Bearer {self.access_token}"}

    def is_expired(self, answer: Answer) -> bool:
        return answer.status_code == 401

    def refresh(self) -> None:
        with self._lock:
            client = HttpClient(self.token_url, retry=self.retry, session=self.session)
            try:
                body = client.request("POST", self.token_url, parse=parse_json, data=self.grant)
            except TransientError:
                raise  # unreachable or failing: not a verdict on the credentials
            except ConnectorError as exc:
                raise AuthError(self._explain(exc)) from None
            if "access_token" not in body:
                raise AuthError(
                    f"connection '{self.connection}': the token endpoint answered without an "
                    "access_token"
                )
            self.access_token = body["access_token"]
            self.token_response = {k: v for k, v in body.items() if "token" not in k}
            if "refresh_token" in body and self.grant.get("grant_type") != "client_credentials":
                self.grant = {**self.grant, "refresh_token": body["refresh_token"]}

    def _explain(self, exc: ConnectorError) -> str:
        text = str(exc)
        hint = "check the connection's client id and secret (environment variables)"
        if "invalid_grant" in text:
            hint = "the refresh token or user credentials were refused; issue new ones"
        return f"connection '{self.connection}': authentication failed: {text}; {hint}"
