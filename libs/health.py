"""grpc.health.v1 for processes that serve nothing else (the workers), and
the check a container runs against it (`python -m libs.health check`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

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


def check(address: str, *, timeout: float = 3.0, env: Mapping[str, str] | None = None) -> bool:
    """Asks the grpc.health.v1 endpoint at `address` about the whole server ("").

    A wildcard host (0.0.0.0, [::]) is asked on loopback. When the process
    serves TLS (TENANTRY_TLS_CERT_FILE), so does the check: it trusts
    TENANTRY_HEALTH_CHECK_CA_FILE (else the system roots), expects the name
    TENANTRY_HEALTH_CHECK_SERVER_NAME (else the host), and presents the
    process's own certificate, which a worker asking for client certificates
    (TENANTRY_TLS_CLIENT_CA_FILE) then checks.
    """
    environ = os.environ if env is None else env
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", ""):
        host = "127.0.0.1"
    target = f"{host}:{port}"
    cert = environ.get("TENANTRY_TLS_CERT_FILE")
    key = environ.get("TENANTRY_TLS_KEY_FILE")
    if cert and key:
        ca = environ.get("TENANTRY_HEALTH_CHECK_CA_FILE")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(ca).read_bytes() if ca else None,
            private_key=Path(key).read_bytes(),
            certificate_chain=Path(cert).read_bytes(),
        )
        name = environ.get("TENANTRY_HEALTH_CHECK_SERVER_NAME")
        options = [("grpc.ssl_target_name_override", name)] if name else []
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as err:
            print(f"health check of {target}: {err.code().name}", file=sys.stderr)
            return False
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    if not serving:
        print(
            f"health check of {target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}",
            file=sys.stderr,
        )
    return serving


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m libs.health check [--address host:port]`: the image's HEALTHCHECK."""
    parser = argparse.ArgumentParser(prog="python -m libs.health", description=check.__doc__)
    parser.add_argument("command", choices=["check"])
    parser.add_argument("--address", default=os.environ.get("TENANTRY_HEALTH_ADDRESS"))
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if not args.address:
        parser.error("TENANTRY_HEALTH_ADDRESS is not set and no --address was given")
    raise SystemExit(0 if check(args.address, timeout=args.timeout) else 1)


if __name__ == "__main__":
    main()
