"""The shared HTTP client against a real local server: which failures it repeats, and that a
call which is not idempotent (a create) is repeated only when the API cannot have acted on it."""

import socket
import threading

import pytest

from flow_assets.connectors.errors import ConnectorError
from flow_assets.connectors.http import (
    HttpClient,
    RetryPolicy,
    TransientError,
    parse_json,
    status_of,
)
from flow_assets.sandbox.server import Reply, SandboxServer, json_body


class Counter(SandboxServer):
    """Answers each POST with the next scripted status (then 201), counting what it received."""

    product = "Counter"

    def __init__(self, script: list[int]):
        super().__init__()
        self.script, self.received = list(script), 0
        self._lock = threading.Lock()

    def respond(self, method, raw_path, headers, body) -> Reply:
        with self._lock:
            self.received += 1
            status = self.script.pop(0) if self.script else 201
        return Reply(status, json_body({"n": self.received}), {"Retry-After": "0"})


def client(url: str) -> HttpClient:
    return HttpClient(url, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01))


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_429_is_repeated_either_way(idempotent):
    with Counter([429]) as server:
        got = client(server.url).request("POST", "/x", parse=parse_json, idempotent=idempotent)
        assert got == {"n": 2} and server.received == 2


def test_a_5xx_is_repeated_for_an_idempotent_call():
    with Counter([503, 502]) as server:
        assert client(server.url).request("PUT", "/x", parse=parse_json) == {"n": 3}


def test_a_5xx_is_not_repeated_for_a_create_and_the_error_says_why():
    with Counter([503]) as server:
        with pytest.raises(ConnectorError, match="not repeated: the POST is not idempotent"):
            client(server.url).request("POST", "/records", parse=parse_json, idempotent=False)
        assert server.received == 1  # sent once: it may have been applied


@pytest.mark.parametrize(("script", "status"), [([404], 404), ([429, 429, 429], 429)])
def test_the_status_of_a_failed_call_is_kept_on_its_error(script, status):
    """Connectors tell a refused credential (401/403) or a rate limit from other failures by
    the answer's status, not by the wording of the message."""
    with Counter(script) as server, pytest.raises(ConnectorError) as failed:
        client(server.url).request("GET", "/x", parse=parse_json)
    assert status_of(failed.value) == status


def test_no_connection_at_all_is_repeated_for_a_create_too():
    with socket.socket() as spare:  # a port nobody listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    nowhere = client(f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError) as failed:
        nowhere.request("POST", "/records", idempotent=False)
    assert failed.value.not_applied and failed.value.unreachable
    assert nowhere.stats.requests == 3  # every attempt made: nothing can have reached the API
