"""A TLS-terminating TCP proxy on loopback, for servers that speak plaintext
only (the Temporal dev server): clients reach it over TLS, it forwards the
bytes to the real server.

It requires a client certificate signed by `client_ca` and records the URI
SANs of the certificates it accepted, so a test can tell which identity got
through; a handshake without one (or with an untrusted one) is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from types import TracebackType

from libs.devstack.certs import KeyPair


class TlsProxy:
    def __init__(self, upstream: str, *, server: KeyPair, client_ca: Path) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
        self._context.load_cert_chain(server.cert, server.key)
        self._context.verify_mode = ssl.CERT_REQUIRED
        # gRPC clients insist on HTTP/2 by ALPN.
        self._context.set_alpn_protocols(["h2"])
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted: list[str] = []
        self.address = ""

    async def __aenter__(self) -> TlsProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._context)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = client_out.get_extra_info("peercert") or {}
        self.accepted.extend(value for kind, value in peer.get("subjectAltName", ()) if kind == "URI")
        try:
            upstream_in, upstream_out = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_out.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(_pipe(client_in, upstream_out), _pipe(upstream_in, client_out))
        finally:
            for writer in (client_out, upstream_out):
                writer.close()
            self._tasks.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    with contextlib.suppress(OSError, RuntimeError):
        if sink.can_write_eof():
            sink.write_eof()
