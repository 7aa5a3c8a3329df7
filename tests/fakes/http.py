"""The plumbing the in-process fake HTTP servers share.

`FakeHttpServer` runs the stdlib's ThreadingHTTPServer in a thread on
127.0.0.1 (an ephemeral port, kept across `stop()`/`start()`), hands every
request to `_answer(handler, path, query, raw_body) -> (status, json_answer)`
under `lock`, records it through `_record(...)` and writes the answer as JSON
(no body when the answer is None). A subclass supplies those two methods, its
state, routes and switches.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


def query_params(query: str) -> dict[str, str]:
    """The query string (or a form body) as a dict; a repeated key keeps its last value."""
    return {k: v[-1] for k, v in parse_qs(query).items()}


class FakeHttpServer:
    """Start/stop, `url`, `running` and request dispatch for a fake server."""

    thread_name = "fake-http"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- lifecycle ----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        """Listens (again on the same port after `stop()`) and serves in a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are written separately

            def setup(self) -> None:
                super().setup()
                fake._connection_opened(self.connection)

            def finish(self) -> None:
                fake._connection_closed(self.connection)
                super().finish()

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                fake._handle(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests read `requests` instead

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops listening: connections are refused until `start()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _connection_opened(self, sock: socket.socket) -> None:
        """Called in the handler thread when a client connects; nothing by default."""

    def _connection_closed(self, sock: socket.socket) -> None:
        """Called in the handler thread when a client connection ends; nothing by default."""

    # -- dispatch -----------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        with self.lock:
            status, answer = self._answer(handler, split.path, split.query, raw)
            self._record(handler, split.path, split.query, raw, status)
        payload = b"" if answer is None else json.dumps(answer).encode()
        handler.send_response(status)
        if answer is not None:
            handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(self, handler: BaseHTTPRequestHandler, path: str, query: str, raw: str) -> tuple[int, Any]:
        """The status and JSON answer (None: no body) for one request; runs under `lock`."""
        raise NotImplementedError

    def _record(self, handler: BaseHTTPRequestHandler, path: str, query: str, raw: str, status: int) -> None:
        """Keeps one answered request for the tests to read; runs under `lock`."""
        raise NotImplementedError
