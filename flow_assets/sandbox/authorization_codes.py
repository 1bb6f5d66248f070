"""The sandboxes' authorization-code grant (RFC 6749 §4.1 with PKCE, RFC 7636): what a vendor's
authorize endpoint answers once its user clicked "Allow" (a sandbox has no login page), and the
checks its token endpoint makes before it exchanges a code. Vendor-neutral: each sandbox routes
its own authorize path here and words a refusal in its own error format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import parse_qs, urlencode, urlsplit

CODE_SECONDS = 600.0  # RFC 6749 §4.1.2: a code lives at most 10 minutes (recommended)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # http is allowed only to these (RFC 8252)
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 §4.1
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # BASE64URL(SHA256(verifier)), unpadded


class AuthorizeAnswer(NamedTuple):
    """The authorize endpoint's answer, in the order of a sandbox Reply's fields."""

    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Refusal:
    """Why the token endpoint refuses a code: an RFC 6749 §5.2 error code, its description, and
    the reason (unknown_code, used_code, expired_code, client, redirect_uri, code_verifier)."""

    error: str
    description: str
    reason: str


@dataclass
class _Issued:
    client_id: str
    redirect_uri: str | None
    challenge: str | None
    expires: float  # monotonic
    used: bool = False


def s256(verifier: str) -> str:
    """The S256 code_challenge of a code_verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class AuthorizationCodes:
    """Codes issued by one sandbox's authorize endpoint for its one client (`client_id`).

    `deny = True`, or `sandbox_deny=1` in the authorize URL, answers as if the user clicked
    "Deny" (error=access_denied). A code is single use: any redemption, failed or not, spends
    it (so a code_verifier cannot be guessed at), and it expires after `lifetime` seconds.
    """

    def __init__(self, client_id: str, lifetime: float = CODE_SECONDS) -> None:
        self.client_id = client_id
        self.lifetime = lifetime
        self.deny = False
        self._codes: dict[str, _Issued] = {}
        self._lock = threading.Lock()

    def authorize(self, method: str, query: str) -> AuthorizeAnswer:
        """GET {authorize}?response_type=code&client_id&redirect_uri&state&scope
        [&code_challenge&code_challenge_method=S256]: 302 back to redirect_uri with code and
        state. A bad client_id or redirect_uri is shown, not redirected (RFC 6749 §4.1.2.1)."""
        if method not in ("GET", "HEAD"):
            return _page(405, "the authorize endpoint takes GET")
        args = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if args.get("client_id") != self.client_id:
            return _page(400, "invalid_client_id: client identifier invalid")
        redirect_uri = args.get("redirect_uri")
        if not redirect_uri or not _redirectable(redirect_uri):
            return _page(400, "redirect_uri_mismatch: redirect_uri must be an https URL, or "
                              "http to a loopback address, without a fragment")  # fmt: skip
        state = args.get("state")
        if args.get("response_type") != "code":
            return _back(redirect_uri, state, error="unsupported_response_type",
                         error_description="response_type must be code")  # fmt: skip
        challenge = args.get("code_challenge")
        if challenge is not None:
            if args.get("code_challenge_method") != "S256":
                return _back(redirect_uri, state, error="invalid_request",
                             error_description="code_challenge_method must be S256")  # fmt: skip
            if not _CHALLENGE.fullmatch(challenge):
                return _back(redirect_uri, state, error="invalid_request",
                             error_description="code_challenge is not a base64url SHA-256")  # fmt: skip
        if self.deny or args.get("sandbox_deny") in ("1", "true"):
            return _back(redirect_uri, state, error="access_denied",
                         error_description="end-user denied authorization")  # fmt: skip
        code = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._codes = {c: i for c, i in self._codes.items() if i.expires > now}
            self._codes[code] = _Issued(
                self.client_id, redirect_uri, challenge, now + self.lifetime
            )
        return _back(redirect_uri, state, code=code)

    def redeem(
        self, code: str | None, client_id: str | None, redirect_uri: str | None,
        code_verifier: str | None,
    ) -> Refusal | None:  # fmt: skip
        """None when the token endpoint may exchange `code` (grant_type=authorization_code);
        else why not. The caller has checked the client's credentials."""
        with self._lock:
            issued = self._codes.get(code or "")
            if issued is None:
                return Refusal("invalid_grant", "invalid authorization code", "unknown_code")
            if issued.used:
                return Refusal("invalid_grant", "authorization code already used", "used_code")
            issued.used = True
        if issued.expires <= time.monotonic():
            return Refusal("invalid_grant", "expired authorization code", "expired_code")
        if client_id != issued.client_id:
            return Refusal("invalid_grant", "code issued to another client", "client")
        if redirect_uri != issued.redirect_uri:
            return Refusal("invalid_grant", "redirect_uri does not match the authorize request",
                           "redirect_uri")  # fmt: skip
        if issued.challenge is not None:
            if not code_verifier or not _VERIFIER.fullmatch(code_verifier):
                return Refusal("invalid_grant", "code_verifier missing or malformed",
                               "code_verifier")  # fmt: skip
            if not hmac.compare_digest(s256(code_verifier), issued.challenge):
                return Refusal("invalid_grant", "code_verifier does not match the code_challenge",
                               "code_verifier")  # fmt: skip
        return None


def _redirectable(uri: str) -> bool:
    parts = urlsplit(uri)
    if parts.fragment or not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)


def _back(redirect_uri: str, state: str | None, **params: str) -> AuthorizeAnswer:
    if state is not None:
        params["state"] = state
    location = redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(params)
    headers = {"Location": location, "Content-Type": "text/html; charset=utf-8",
               "Cache-Control": "no-store"}  # fmt: skip
    return AuthorizeAnswer(302, b"", headers)


def _page(status: int, message: str) -> AuthorizeAnswer:
    return AuthorizeAnswer(status, message.encode() + b"\n", {"Content-Type": "text/plain"})
