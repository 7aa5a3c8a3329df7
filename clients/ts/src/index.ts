/**
 * The TypeScript client of Tenantry's TenantService, over gRPC (HTTP/2 with
 * mutual TLS) with @connectrpc/connect-node. The messages and the service are
 * generated from proto/api into ./gen (`make proto`; never edited by hand).
 */
import { readFileSync } from "node:fs";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { TenantService } from "./gen/tenantry/tenant/v1/tenant_service_pb.js";

export * from "./gen/tenantry/tenant/v1/tenant_pb.js";
export * from "./gen/tenantry/tenant/v1/tenant_service_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";

export type TenantClient = Client<typeof TenantService>;

export interface TenantClientOptions {
  /** `host:port` of the API (TLS only). */
  address: string;
  /** PEM file of the CA that signed the API's certificate. */
  caFile: string;
  /** PEM files of the client certificate (mTLS: every connection presents one). */
  certFile: string;
  keyFile: string;
  /** An OIDC bearer token; when given, it names the caller instead of the certificate. */
  token?: string;
  /** The deadline of a call that sets no `timeoutMs` of its own; none by default. */
  defaultTimeoutMs?: number;
}

/** A TenantService client that presents a client certificate and, optionally, a bearer token. */
export function createTenantClient(options: TenantClientOptions): TenantClient {
  const interceptors: Interceptor[] = [];
  if (options.token !== undefined) {
    interceptors.push(bearer(options.token));
  }
  const transport = createGrpcTransport({
    baseUrl: `https://${options.address}`,
    nodeOptions: {
      ca: readFileSync(options.caFile),
      cert: readFileSync(options.certFile),
      key: readFileSync(options.keyFile),
    },
    interceptors,
    ...(options.defaultTimeoutMs === undefined ? {} : { defaultTimeoutMs: options.defaultTimeoutMs }),
  });
  return createClient(TenantService, transport);
}

function bearer(token: string): Interceptor {
  return (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
}

/** One field of a request and what is wrong with it (google.rpc.BadRequest). */
export interface FieldViolation {
  /** The API's field path, e.g. `tenant.admin.email`. */
  field: string;
  description: string;
}

/** What a failed call tells: its status and the google.rpc details the server sent. */
export interface ApiError {
  code: Code;
  /** The status message, without connect's `[code]` prefix. */
  message: string;
  /**
   * ErrorInfo.reason (`TENANT_NOT_FOUND`, `INVALID_ARGUMENT`, …): branch on
   * this, never on the message. Undefined when the error has no ErrorInfo:
   * then it came from the transport (no connection, TLS, deadline), not
   * from the server, whose errors always carry one.
   */
  reason: string | undefined;
  /** ErrorInfo.domain (`tenantry.dev`). */
  domain: string | undefined;
  /** ErrorInfo.metadata, e.g. `tenant_id`, `differs`, `permission`. */
  metadata: Record<string, string>;
  /** BadRequest field violations, in the order sent; empty when none. */
  fieldViolations: FieldViolation[];
}

/** Reads a caught error (a ConnectError, or anything else) as an ApiError. */
export function apiError(caught: unknown): ApiError {
  const error = ConnectError.from(caught);
  const [info] = error.findDetails(ErrorInfoSchema);
  return {
    code: error.code,
    message: error.rawMessage,
    reason: info?.reason,
    domain: info?.domain,
    metadata: { ...info?.metadata },
    fieldViolations: error
      .findDetails(BadRequestSchema)
      .flatMap((bad) => bad.fieldViolations.map(({ field, description }) => ({ field, description }))),
  };
}
