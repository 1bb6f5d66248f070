"""Errors a connector raises; messages name the connection, the call and the fix, never a secret."""

from __future__ import annotations


class ConnectorError(RuntimeError):
    """Something the source said or did that stops a read."""


class AuthError(ConnectorError):
    """Credentials were refused; re-trying will not help."""


class RateLimitExceeded(ConnectorError):
    """The API's own limit (e.g. a daily request quota) is used up; wait or raise the limit."""


class MalformedResponse(ConnectorError):
    """The API answered with something that does not follow its documented shape."""


class UnknownObject(ConnectorError):
    """The object is not one the source has."""


class UnknownField(ConnectorError):
    """A field is not one the object has."""
