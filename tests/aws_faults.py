"""A proxy on 127.0.0.1 in front of the moto server that makes chosen AWS calls fail as AWS
does under load (throttled whole, partly refused, or S3's 503 SlowDown) and forwards the rest."""

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import requests

from flow_assets.environment import Settings

PUT_OBJECT = "S3.PutObject"  # S3 calls carry no X-Amz-Target: this one is told by method and path
THROTTLE_CODES = {
    "AWSEvents.PutEvents": "ThrottlingException",
    "DynamoDB_20120810.BatchWriteItem": "ProvisionedThroughputExceededException",
}
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message>"
    b"<RequestId>flowbridge-tests</RequestId></Error>"
)
JSON = {"Content-Type": "application/x-amz-json-1.1"}
# Not passed on: hop-by-hop, set again here, or (x-amz-crc32) wrong for a rewritten answer.
DROPPED_HEADERS = {
    "content-length", "transfer-encoding", "connection", "content-encoding", "x-amz-crc32",
}  # fmt: skip

# A partly failed call: the request to forward (None: nothing is left), how many records were
# held back, and what makes moto's answer report them as not taken.
Split = tuple[dict | None, int, Callable[[dict], dict]]


def hold_back_writes(request: dict, k: int) -> Split:
    """BatchWriteItem: each table's last k writes come back in UnprocessedItems."""
    tables = request["RequestItems"]
    held = {table: writes[-k:] for table, writes in tables.items()}
    request["RequestItems"] = {
        table: writes[:-k] for table, writes in tables.items() if len(writes) > k
    }
    return (
        request if request["RequestItems"] else None,
        sum(len(writes) for writes in held.values()),
        lambda answer: {**answer, "UnprocessedItems": held},
    )


def hold_back_entries(request: dict, k: int) -> Split:
    """PutEvents: the last k entries come back with an ErrorCode and no EventId, in request
    order, counted in FailedEntryCount."""
    held = request["Entries"][-k:]
    request["Entries"] = request["Entries"][:-k]
    failed = [{"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}] * len(held)
    return (
        request if request["Entries"] else None,
        len(held),
        lambda answer: {
            **answer,
            "FailedEntryCount": answer.get("FailedEntryCount", 0) + len(held),
            "Entries": answer.get("Entries", []) + failed,
        },
    )


HOLD_BACK = {
    "AWSEvents.PutEvents": hold_back_entries,
    "DynamoDB_20120810.BatchWriteItem": hold_back_writes,
}


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream
        self.remaining: dict[str, int] = {}  # calls still to throttle, by target
        self.partial: dict[str, int] = {}  # calls still to fail partly, by target
        self.holding: dict[str, int] = {}  # records each of those holds back
        self.slow_keys = re.compile("")
        self.throttled = self.held_back = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, headers: dict[str, str], content: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in DROPPED_HEADERS:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _upstream(self, body: bytes) -> requests.Response:
                skip = ("host", "content-length")  # requests sets the length of the body sent
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                return requests.request(
                    self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=30
                )

            def _target(self) -> str:
                path = unquote(urlsplit(self.path).path)
                _, _, key = path.lstrip("/").partition("/")  # path-style: /bucket/key
                if self.command == "PUT" and key and proxy.slow_keys.search(key):
                    return PUT_OBJECT
                return self.headers.get("X-Amz-Target", "")

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self._target()
                if take(proxy.remaining, target):
                    proxy.throttled += 1
                    if target == PUT_OBJECT:
                        return self._answer(503, {"Content-Type": "application/xml"}, SLOW_DOWN)
                    error = {"__type": THROTTLE_CODES[target], "message": "Rate exceeded"}
                    return self._answer(400, JSON, json.dumps(error).encode())
                if take(proxy.partial, target):
                    request, held, fix = HOLD_BACK[target](json.loads(body), proxy.holding[target])
                    proxy.held_back += held
                    if request is None:  # every record held back: moto sees no call
                        return self._answer(200, JSON, json.dumps(fix({})).encode())
                    answer = self._upstream(json.dumps(request).encode())
                    content = (
                        json.dumps(fix(answer.json())).encode() if answer.ok else answer.content
                    )
                    return self._answer(answer.status_code, dict(answer.headers), content)
                answer = self._upstream(body)
                self._answer(answer.status_code, dict(answer.headers), answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def throttle(self, target: str, count: int) -> None:
        """The next `count` calls of `target` are throttled (-1: every call)."""
        self.remaining[target] = count

    def slow_down(self, count: int, keys: str = "") -> None:
        """The next `count` S3 PutObject calls (-1: every one) whose key matches the regular
        expression `keys` are answered 503 SlowDown."""
        self.remaining[PUT_OBJECT], self.slow_keys = count, re.compile(keys)

    def hold_back(self, target: str, records: int, calls: int) -> None:
        """The next `calls` calls of `target` (-1: every call) pass on all but their last
        `records` and answer that those were not taken, as a partly failed batch."""
        self.partial[target], self.holding[target] = calls, records

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def take(counts: dict[str, int], target: str) -> bool:
    """Whether a fault is still due for target (a count of -1 never runs out); uses one up."""
    if counts.get(target, 0) == 0:
        return False
    counts[target] -= 1
    return True


def limit_attempts(project: Settings, retries: int) -> None:
    """Sets max_attempts on the project's aws connection, so that a permanent fault fails a run
    quickly. botocore counts it as retries: each call is made at most retries + 1 times."""
    connections = project.flows_dir / "connections.yaml"
    text, line = connections.read_text(), "  endpoint_url: ${AWS_ENDPOINT_URL:-}\n"
    assert line in text
    connections.write_text(text.replace(line, f"{line}  max_attempts: {retries}\n"))
