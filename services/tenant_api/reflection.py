"""Server reflection under both of its names: `grpc.reflection.v1` (what
current grpcurl, buf curl and Postman ask for) and `v1alpha` (older clients).

grpcio-reflection serves only v1alpha from Python. v1's messages are the same
on the wire (only the package differs), so the one servicer is registered
under both service names with v1alpha's message classes, and v1's file is
added to the descriptor pool, so that reflection can describe itself too.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA = reflection.SERVICE_NAME
V1 = "grpc.reflection.v1.ServerReflection"
METHOD = "ServerReflectionInfo"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serves reflection v1 and v1alpha on `server`; both list `service_names` and themselves."""
    _add_v1_file(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer((*service_names, V1, V1ALPHA))
    for service in (V1, V1ALPHA):
        handlers = {
            METHOD: grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        server.add_registered_method_handlers(service, handlers)


def v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, made from v1alpha's: the same messages under package v1."""
    alpha = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(alpha)
    old, new = f".{alpha.package}.", ".grpc.reflection.v1."
    v1 = descriptor_pb2.FileDescriptorProto(
        name=_V1_FILE, package="grpc.reflection.v1", syntax=alpha.syntax or "proto3"
    )
    v1.message_type.extend(alpha.message_type)
    v1.service.extend(alpha.service)
    for message in v1.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name.removeprefix(old)
    for method in (m for s in v1.service for m in s.method):
        method.input_type = new + method.input_type.removeprefix(old)
        method.output_type = new + method.output_type.removeprefix(old)
    return v1


def _add_v1_file(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(_V1_FILE)
    except KeyError:
        pool.Add(v1_file())
