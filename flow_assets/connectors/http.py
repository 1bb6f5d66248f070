"""One HTTP client for every SaaS API: retries with backoff on 429, 5xx and dropped connections,
honouring Retry-After, with a re-authentication hook for expired tokens."""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import requests
import urllib3
from requests.exceptions import ChunkedEncodingError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from flow_assets.connectors.errors import ConnectorError, MalformedResponse

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Answer:
    """A response with its whole body read: what retries, auth and parsing look at."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class Auth(Protocol):
    """Supplies request headers and renews them when the API says the session expired."""

    def headers(self) -> dict[str, str]: ...

    def is_expired(self, answer: Answer) -> bool: ...

    def refresh(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0  # a longer Retry-After is honoured only up to this


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    reauthentications: int = 0
    bytes_received: int = 0


class Refused(ConnectorError):
    """An error answer that is not repeated (a status outside RETRY_STATUSES): the API's verdict
    on the request. Its answer is kept for callers that read the vendor's own error body."""

    def __init__(self, message: str, answer: Answer) -> None:
        super().__init__(message)
        self.answer = answer


class TransientError(ConnectorError):
    """A failure that another attempt may not repeat."""

    def __init__(
        self, message: str, retry_after: float | None = None, unreachable: bool = False,
        not_applied: bool = False, status: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status  # the answer's HTTP status, when there was an answer
        self.retry_after = retry_after
        self.unreachable = unreachable  # no answer at all, as opposed to an error answer
        self.not_applied = not_applied  # the API cannot have acted on it (429, no connection)


@dataclass
class HttpClient:
    """requests.Session plus the retry and auth behaviour every connector needs."""

    base_url: str
    auth: Auth | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: tuple[float, float] = (10.0, 120.0)
    describe_error: Callable[[Answer], str] = lambda a: a.text[:300]
    session: requests.Session = field(default_factory=requests.Session)
    stats: HttpStats = field(default_factory=HttpStats)

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url.rstrip("/") + "/" + path_or_url.lstrip("/")

    def request(
        self,
        method: str,
        path_or_url: str,
        parse: Callable[[bytes], T] = lambda b: b,  # type: ignore[assignment, return-value]
        idempotent: bool = True,
        **kwargs: Any,
    ) -> T:
        """Send one request and parse its body, retrying both on transient faults.

        A body that cannot be parsed is treated as transient (a truncated answer usually is); when
        the attempts run out, the last error is raised with the call named. A call that is not
        `idempotent` (a create) is repeated only when the API cannot have acted on it: a 429, or
        no connection made; a repeat after a lost answer could create the records twice.
        """
        url = self.url(path_or_url)

        def repeatable(exc: BaseException) -> bool:
            return isinstance(exc, TransientError) and (idempotent or exc.not_applied)

        try:
            for attempt in Retrying(
                retry=retry_if_exception(repeatable),
                stop=stop_after_attempt(self.retry.max_attempts),
                wait=self._wait,
                before_sleep=self._log_retry,
                reraise=True,
            ):
                with attempt:
                    return self._attempt(method, url, parse, kwargs)
        except TransientError as exc:
            if not repeatable(exc):
                raise ConnectorError(
                    f"{exc}; not repeated: the {method} is not idempotent and may have been applied"
                ) from exc
            if isinstance(exc.__cause__, MalformedResponse):
                raise MalformedResponse(
                    f"{exc} (after {self.retry.max_attempts} attempts)"
                ) from None
            raise
        raise AssertionError("unreachable")

    def _attempt(self, method: str, url: str, parse: Callable[[bytes], T], kwargs: dict) -> T:
        response = self._send(method, url, kwargs)
        if self.auth is not None and self.auth.is_expired(response):
            self.stats.reauthentications += 1
            self.auth.refresh()
            response = self._send(method, url, kwargs)
            if self.auth.is_expired(response):
                # A new session can take a moment to be honoured everywhere; try again later.
                raise TransientError(f"{method} {_path(url)}: session refused after re-login")
        if response.status_code in RETRY_STATUSES:
            raise TransientError(
                f"{method} {_path(url)} answered {response.status_code}: "
                f"{self.describe_error(response)}",
                retry_after=_retry_after_seconds(response),
                not_applied=response.status_code == 429,
                status=response.status_code,
            )
        if response.status_code >= 400:
            raise Refused(
                f"{method} {_path(url)} answered {response.status_code}: "
                f"{self.describe_error(response)}",
                response,
            )
        try:
            return parse(response.body)
        except MalformedResponse as exc:
            raise TransientError(f"{method} {_path(url)}: {exc}") from exc

    def _send(self, method: str, url: str, kwargs: dict) -> Answer:
        headers = dict(kwargs.get("headers") or {})
        if self.auth is not None:
            headers.update(self.auth.headers())
        rest = {k: v for k, v in kwargs.items() if k != "headers"}
        self.stats.requests += 1
        try:
            response = self.session.request(
                method, url, headers=headers, timeout=self.timeout, stream=True, **rest
            )
            # The whole body in one read (requests' .content reads 10 KB at a time, which costs
            # a fifth of a large read), here, so a connection dropped mid-body is retried.
            with response:
                body = response.raw.read(decode_content=True)
        except (requests.ConnectionError, requests.Timeout, ChunkedEncodingError) as exc:
            raise TransientError(
                f"{method} {_path(url)}: {type(exc).__name__}",
                unreachable=True,
                not_applied=_never_connected(exc),
            ) from exc
        except urllib3.exceptions.HTTPError as exc:  # raised by raw reads, not wrapped by requests
            raise TransientError(
                f"{method} {_path(url)}: {type(exc).__name__}", unreachable=True
            ) from exc
        self.stats.bytes_received += len(body)
        return Answer(response.status_code, response.headers, body)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry.max_retry_after)
        return wait_exponential_jitter(self.retry.initial_backoff, self.retry.max_backoff)(state)

    def _log_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        log.warning("retrying in %.1fs (attempt %d): %s", wait, state.attempt_number, exc)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of the answer behind an HttpClient error (401, 403, 429...), or None
    when there was no answer or the error is not HttpClient's."""
    if isinstance(exc, Refused):
        return exc.answer.status_code
    return exc.status if isinstance(exc, TransientError) else None


def parse_json(body: bytes) -> Any:
    """json.loads, with a malformed body reported (and retried) as MalformedResponse."""
    try:
        return json.loads(body)
    except ValueError as exc:
        raise MalformedResponse(
            f"answer is not valid JSON ({exc.msg} at character {exc.pos} of {len(body)})"
        ) from None


def _never_connected(exc: Exception) -> bool:
    """Whether the request failed before a connection was made (so it never reached the API)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _path(url: str) -> str:
    """The URL without scheme, host or query: safe to log (queries may carry filter values)."""
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]


def _retry_after_seconds(answer: Answer) -> float | None:
    value = answer.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None
