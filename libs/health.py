"""grpc.health.v1 for processes that serve nothing else (the workers)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


class HealthEndpoint:
    """A small gRPC server answering Check/Watch for one process."""

    def __init__(self, address: str) -> None:
        self._servicer = health.aio.HealthServicer()
        self._server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, self._server)
        self.port = self._server.add_insecure_port(address)

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
