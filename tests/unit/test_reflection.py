"""Reflection v1 beside v1alpha: v1's file made from v1alpha's, served in process."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2

from services.tenant_api import reflection

pytestmark = pytest.mark.timeout(30)


def test_the_v1_file_is_v1alphas_messages_under_package_v1() -> None:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(reflection.v1_file())
    service = pool.FindServiceByName(reflection.V1)
    [method] = service.methods
    assert method.name == reflection.METHOD
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    assert method.output_type.full_name == "grpc.reflection.v1.ServerReflectionResponse"
    # The same fields, so the same wire format.
    alpha = reflection_pb2.ServerReflectionResponse.DESCRIPTOR
    v1 = pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    assert [(f.name, f.number, f.type) for f in v1.fields] == [
        (f.name, f.number, f.type) for f in alpha.fields
    ]


async def test_both_names_answer_and_list_each_other() -> None:
    server = grpc.aio.server()
    reflection.enable(server, ["tenantry.tenant.v1.TenantService"])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for service in (reflection.V1, reflection.V1ALPHA):
                call = channel.stream_stream(
                    f"/{service}/{reflection.METHOD}",
                    request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                    response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
                )
                requests = [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol=reflection.V1),
                ]
                listed, described = [reply async for reply in call(iter(requests), timeout=10)]
                names = {s.name for s in listed.list_services_response.service}
                assert names == {"tenantry.tenant.v1.TenantService", reflection.V1, reflection.V1ALPHA}
                [raw] = described.file_descriptor_response.file_descriptor_proto
                assert descriptor_pb2.FileDescriptorProto.FromString(raw).package == "grpc.reflection.v1"
    finally:
        await server.stop(None)
