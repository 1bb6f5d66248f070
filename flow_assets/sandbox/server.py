"""What every SaaS sandbox shares: serving HTTP/1.1 on 127.0.0.1 in a daemon thread (optionally
TLS), its lifecycle (start / stop / with), and the fault queue tests inject into. A sandbox
subclasses SandboxServer and answers `respond(method, path, headers, body) -> Reply` the way its
vendor's documented API does; nothing here knows any vendor."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import socket
import ssl
import struct
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from flow_assets.sandbox.faults import FaultQueue

log = logging.getLogger(__name__)
JSON = "application/json;charset=UTF-8"


@dataclass
class Reply:
    status: int
    body: bytes | memoryview = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # drop the connection (TCP RST) instead of answering


def json_body(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def basic_credentials(headers: Any) -> tuple[str, str] | None:
    """The user (or client id) and secret of an `Authorization: Basic` header; None when there
    is none or it does not decode."""
    scheme, _, credential = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "basic" or not credential:
        return None
    try:
        user, _, secret = base64.b64decode(credential.strip()).decode().partition(":")
    except ValueError:
        return None
    return user, secret


class SandboxServer:
    """Serving and lifecycle for a vendor sandbox. Subclasses set `product` (named in the
    Server header and thread name) and `fault_kinds`, and implement `respond`; they may
    override `internal_error` (the vendor's 500 body) and `before_start`."""

    product = "Sandbox"
    fault_kinds: tuple[str, ...] = ()
    content_type = JSON  # of answers that set none

    def __init__(
        self, port: int = 0, ssl_context: ssl.SSLContext | None = None, quiet: bool = True
    ) -> None:
        self.quiet = quiet
        self.faults = FaultQueue(self.fault_kinds)
        self._requested_port = port
        self._ssl_context = ssl_context
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- what a vendor sandbox supplies ------------------------------------------

    def respond(self, method: str, raw_path: str, headers: Any, body: bytes) -> Reply:
        raise NotImplementedError

    def internal_error(self) -> Reply:
        """The answer when `respond` itself fails: the vendor's 500."""
        return Reply(500, json_body({"error": "internal error"}))

    def before_start(self) -> None:
        """Work done once before the socket opens (e.g. building data up front)."""

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self.before_start()
        server = _Server(("127.0.0.1", self._requested_port), _Handler)
        server.sandbox = self
        server.ssl_context = self._ssl_context
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{self.product.lower()}-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and drop open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # --- faults --------------------------------------------------------------------

    def inject(
        self, kind: str, count: int = 1, path_contains: str | None = None,
        retry_after: float | None = None, after: int = 0,
    ) -> None:  # fmt: skip
        """Make the next `count` requests whose path (and "?query") contain `path_contains`,
        after letting `after` of them pass, fail as `kind` (one of `fault_kinds`)."""
        self.faults.inject(kind, count, path_contains, retry_after, after)

    def pending_faults(self) -> list[dict[str, Any]]:
        return self.faults.pending()

    def reset_faults(self) -> None:
        self.faults.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sandbox: SandboxServer
    ssl_context: ssl.SSLContext | None = None

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn = request
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                # Handshake here, in the connection's thread, not in the accept loop.
                conn = self.ssl_context.wrap_socket(request, server_side=True)
            with self._connections_lock:
                self._connections.add(conn)
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            with self._connections_lock:
                self._connections.discard(conn)
            if conn is not request:
                conn.close()

    def close_connections(self) -> None:
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping connections (and the reset fault) are routine here.
        if not self.sandbox.quiet:
            log.exception("error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 300  # idle keep-alive connections are closed after this
    server: _Server

    @property
    def server_version(self) -> str:  # type: ignore[override]
        return f"Flowbridge{self.server.sandbox.product}Sandbox/1.0"

    def do_GET(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True  # cannot tell where the next request starts
            self._send(Reply(400, json_body({"error": "invalid Content-Length header"})))
            return
        body = self.rfile.read(length) if length > 0 else b""
        sandbox = self.server.sandbox
        try:
            reply = sandbox.respond(self.command, self.path, self.headers, body)
        except Exception:
            log.exception("sandbox failed on %s %s", self.command, self.path.split("?")[0])
            reply = sandbox.internal_error()
        if reply.reset:
            self._reset()
            return
        with contextlib.suppress(OSError):
            self._send(reply)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _send(self, reply: Reply) -> None:
        sandbox = self.server.sandbox
        headers = {"Date": formatdate(usegmt=True), "Content-Type": sandbox.content_type}
        headers |= reply.headers
        headers["Content-Length"] = str(len(reply.body))
        if self.close_connection:
            headers["Connection"] = "close"
        phrase = HTTPStatus(reply.status).phrase
        lines = [f"HTTP/1.1 {reply.status} {phrase}", *(f"{k}: {v}" for k, v in headers.items())]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if self.command != "HEAD":
            # A separate write rather than a megabyte copy; TCP_NODELAY (set on accept)
            # keeps the short head from waiting for an ACK.
            self.wfile.write(reply.body)
        if not sandbox.quiet:  # never the query string: it may hold secrets
            log.info("%s %s -> %d (%d bytes)", self.command, self.path.split("?")[0],
                     reply.status, len(reply.body))  # fmt: skip

    def _reset(self) -> None:
        """Drop the connection with a TCP RST instead of answering."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The buffered reader holds the socket open too; close both so the kernel actually
        # drops it, with linger 0 meaning RST rather than FIN.
        with contextlib.suppress(OSError):
            self.rfile.close()
        self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:
        # Only protocol-level problems reach here; nothing logs headers (tokens) or bodies.
        if not self.server.sandbox.quiet:
            message = re.sub(r"\?[^\s\"']*", "?...", format % args)
            log.warning("%s - %s", self.address_string(), message)
