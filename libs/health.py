"""grpc.health.v1 for processes that serve nothing else (the workers)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from libs.config import ServerTls


def _credentials(tls: ServerTls) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=tls.client_ca_file.read_bytes() if tls.client_ca_file else None,
        require_client_auth=tls.client_ca_file is not None,
    )


class HealthEndpoint:
    """A small gRPC server answering Check/Watch for one process.

    With `tls` it serves only TLS (and with a client CA, only to clients
    whose certificate that CA signed).
    """

    def __init__(self, address: str, *, tls: ServerTls | None = None) -> None:
        self._servicer = health.aio.HealthServicer()
        self._server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, self._server)
        if tls is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, _credentials(tls))

    async def start(self) -> None:
        await self._server.start()

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._servicer.set("", status)

    async def stop(self) -> None:
        await self._servicer.enter_graceful_shutdown()
        await self._server.stop(grace=1)
