"""A proxy on 127.0.0.1 in front of the moto server that answers chosen AWS calls with a
throttling error, as AWS does under load, and forwards everything else."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

THROTTLE_CODES = {
    "AWSEvents.PutEvents": "ThrottlingException",
    "DynamoDB_20120810.BatchWriteItem": "ProvisionedThroughputExceededException",
}


class ThrottlingProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream
        self.remaining: dict[str, int] = {}
        self.throttled = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                if proxy.remaining.get(target, 0) != 0:
                    proxy.remaining[target] -= 1
                    proxy.throttled += 1
                    reply = json.dumps(
                        {"__type": THROTTLE_CODES[target], "message": "Rate exceeded"}
                    ).encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = requests.request(
                    self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=30
                )
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def throttle(self, target: str, count: int) -> None:
        """The next `count` calls of `target` are throttled (-1: every call)."""
        self.remaining[target] = count

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
