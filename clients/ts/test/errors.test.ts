// The error helper without the stack: a real gRPC server in this process
// (connect-node over h2c) fails calls with google.rpc details, and the helper
// reads them back from what the gRPC client got on the wire.
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "../src/gen/google/rpc/error_details_pb.js";
import { apiError, Code, ConnectError, TenantService, type TenantClient } from "../src/index.js";
import { failure } from "./support.js";

const violations = [
  { field: "tenant_id", description: "must be 3 to 32 lowercase letters" },
  { field: "tenant.admin.email", description: "must be an email address" },
];
const invalid = new ConnectError("tenant_id, tenant.admin.email: invalid", Code.InvalidArgument, undefined, [
  {
    desc: ErrorInfoSchema,
    value: { reason: "INVALID_ARGUMENT", domain: "tenantry.dev", metadata: { n: "2" } },
  },
  // Another kind in between: each is found by its type, not its position.
  { desc: RetryInfoSchema, value: {} },
  { desc: BadRequestSchema, value: { fieldViolations: violations } },
]);
const notFound = new ConnectError("tenant acme not found", Code.NotFound, undefined, [
  {
    desc: ErrorInfoSchema,
    value: { reason: "TENANT_NOT_FOUND", domain: "tenantry.dev", metadata: { tenant_id: "acme" } },
  },
]);

function routes(router: ConnectRouter): void {
  router.service(TenantService, {
    createTenant() {
      throw invalid;
    },
    getTenant() {
      throw notFound;
    },
    listTenants() {
      throw new ConnectError("boom", Code.Internal);
    },
  });
}

let server: http2.Http2Server;
let client: TenantClient;
const sessions = new Set<http2.ServerHttp2Session>();

before(async () => {
  server = http2.createServer(connectNodeAdapter({ routes }));
  server.on("session", (session) => sessions.add(session));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}`, defaultTimeoutMs: 5_000 });
  client = createClient(TenantService, transport);
});

after(async () => {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  // The client's idle session would hold the server open.
  for (const session of sessions) session.destroy();
  await closed;
});

test("apiError reads ErrorInfo and BadRequest field violations off the wire", { timeout: 10_000 }, async () => {
  const error = apiError(await failure(() => client.createTenant({ tenantId: "Bad_Id" })));
  assert.deepEqual(
    [Code[error.code], error.message, error.reason, error.domain, error.metadata],
    ["InvalidArgument", invalid.rawMessage, "INVALID_ARGUMENT", "tenantry.dev", { n: "2" }],
  );
  assert.deepEqual(error.fieldViolations, violations);
});

test("apiError of an error without BadRequest has no field violations", { timeout: 10_000 }, async () => {
  const error = apiError(await failure(() => client.getTenant({ name: "tenants/acme" })));
  assert.deepEqual(
    [Code[error.code], error.reason, error.metadata, error.fieldViolations],
    ["NotFound", "TENANT_NOT_FOUND", { tenant_id: "acme" }, []],
  );
});

test("apiError of an error without ErrorInfo has no reason", { timeout: 10_000 }, async () => {
  const error = apiError(await failure(() => client.listTenants({})));
  assert.deepEqual(
    [Code[error.code], error.message, error.reason, error.domain, error.fieldViolations],
    ["Internal", "boom", undefined, undefined, []],
  );
  // Not a ConnectError at all: still an ApiError, code Unknown.
  const other = apiError(new Error("socket hang up"));
  assert.deepEqual([Code[other.code], other.reason, other.fieldViolations], ["Unknown", undefined, []]);
});
