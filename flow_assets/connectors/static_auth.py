"""API-token auth shared by connectors: a credential that cannot be renewed (an API token, a
private app's or bot token, a user's password), so a 401 is the API's final word on it."""

from __future__ import annotations

import base64

from flow_assets.connectors.http import Answer


class StaticAuth:
    def __init__(self, header: str):
        self._header = header  # holds the secret: never in repr, logs or errors

    @classmethod
    def bearer(cls, token: str) -> StaticAuth:
        return cls(f"Bearer {token}")

    @classmethod
    def basic(cls, user: str, secret: str) -> StaticAuth:
        return cls("Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode())

    def __repr__(self) -> str:
        return f"StaticAuth({self._header.split(' ', 1)[0]} ***)"

    def headers(self) -> dict[str, str]:
        return {"Authorization": self._header}

    def is_expired(self, answer: Answer) -> bool:
        return False

    def refresh(self) -> None:
        """Nothing to renew (is_expired is never true)."""
