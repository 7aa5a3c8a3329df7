// A tenant's whole life through this client, against the end-to-end stack:
// tests/e2e/test_client_ts.py starts it and passes its address and
// credentials in the environment (see the `client_env` fixture).
import type { MessageInitShape } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import {
  apiError,
  Code,
  createTenantClient,
  PlanTier,
  Tenant_State,
  TenantEvent_Kind,
  type CreateTenantRequestSchema,
  type Tenant,
  type TenantClient,
  type TenantClientOptions,
  type TenantEvent,
} from "../src/index.js";
import { failure } from "./support.js";

// Every unary call's deadline; streams set their own.
const CALL = { timeoutMs: 30_000 };

/** A setting of the e2e stack; missing means the suite was not started by its pytest test. */
function env(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run this suite through tests/e2e/test_client_ts.py (it starts the stack)`);
  }
  return value;
}

function credentials(): TenantClientOptions {
  return {
    address: env("TENANTRY_ADDRESS"),
    caFile: env("TENANTRY_CA_FILE"),
    certFile: env("TENANTRY_CLIENT_CERT_FILE"),
    keyFile: env("TENANTRY_CLIENT_KEY_FILE"),
  };
}

/** A fresh tenant id: the stack is shared by the whole e2e session. */
function newId(): string {
  return `ts-${randomBytes(5).toString("hex")}`;
}

type CreateTenantInit = MessageInitShape<typeof CreateTenantRequestSchema>;

function spec(tenantId: string, email = "ada@acme.example.com"): CreateTenantInit {
  return {
    tenantId,
    tenant: {
      displayName: "Acme Corp",
      planTier: PlanTier.POOLED,
      domains: [`${tenantId}.example.com`],
      admin: { email, givenName: "Ada" },
    },
  };
}

/** Follows WatchTenant until the stream ends (no run under way); returns the tenant as it settled. */
async function settle(client: TenantClient, name: string, timeoutMs = 120_000): Promise<Tenant> {
  let last: Tenant | undefined;
  for await (const update of client.watchTenant({ name }, { timeoutMs })) {
    last = update.tenant;
  }
  assert.ok(last, `WatchTenant(${name}) sent no update`);
  return last;
}

async function allEvents(client: TenantClient, parent: string): Promise<TenantEvent[]> {
  const events: TenantEvent[] = [];
  let pageToken = "";
  do {
    const page = await client.listTenantEvents({ parent, pageToken }, CALL);
    events.push(...page.events);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return events;
}

test("a tenant's lifecycle, called with a client certificate and with a bearer token", { timeout: 300_000 }, async () => {
  // README: begin
  const client = createTenantClient({
    address: env("TENANTRY_ADDRESS"), // host:port, TLS
    caFile: env("TENANTRY_CA_FILE"),
    certFile: env("TENANTRY_CLIENT_CERT_FILE"), // mTLS: the caller, unless a `token` names another
    keyFile: env("TENANTRY_CLIENT_KEY_FILE"),
  });
  const tenantId = newId(); // ts-<random>: the stack is shared
  const name = `tenants/${tenantId}`;
  const created = await client.createTenant(
    {
      tenantId,
      tenant: {
        displayName: "Acme Corp",
        planTier: PlanTier.POOLED,
        domains: [`${tenantId}.example.com`],
        admin: { email: "ada@acme.example.com", givenName: "Ada" },
      },
    },
    { timeoutMs: 30_000 },
  );
  let tenant = created.tenant;
  // An update per change of state or step, until no run is under way.
  for await (const update of client.watchTenant({ name }, { timeoutMs: 120_000 })) {
    tenant = update.tenant;
  }
  assert.equal(tenant?.state, Tenant_State.ACTIVE);
  // README: end
  // The same connection settings, with a token: the token names the caller.
  const byToken = createTenantClient({ ...credentials(), token: env("TENANTRY_BEARER_TOKEN") });

  const got = (await byToken.getTenant({ name }, CALL)).tenant;
  assert.deepEqual(
    [got?.name, got?.tenantId, got?.state, got?.planTier, got?.domains],
    [name, tenantId, Tenant_State.ACTIVE, PlanTier.POOLED, [`${tenantId}.example.com`]],
  );

  // Suspend and resume answer once their run has ended.
  assert.equal((await byToken.suspendTenant({ name }, CALL)).tenant?.state, Tenant_State.SUSPENDED);
  assert.equal((await client.getTenant({ name }, CALL)).tenant?.state, Tenant_State.SUSPENDED);
  assert.equal((await client.resumeTenant({ name }, CALL)).tenant?.state, Tenant_State.ACTIVE);

  // A deletion with a grace period waits for its purge time; undelete ends it.
  const graceSeconds = 3600;
  const asked = Date.now();
  const gracePeriod = { seconds: BigInt(graceSeconds) };
  const deleting = (await byToken.deleteTenant({ name, gracePeriod }, CALL)).tenant;
  assert.equal(deleting?.state, Tenant_State.DEPROVISIONING);
  const purgeMs = Number(deleting?.purgeTime?.seconds ?? 0n) * 1000;
  const expected = asked + graceSeconds * 1000;
  assert.ok(Math.abs(purgeMs - expected) < 60_000, `purge time ${purgeMs}, not about ${expected}`);
  await client.undeleteTenant({ name }, CALL);
  assert.equal((await settle(client, name)).state, Tenant_State.ACTIVE);

  // A hard delete: no grace period, still a backup, then everything removed.
  const hard = (await byToken.deleteTenant({ name, hardDelete: true }, CALL)).tenant;
  assert.equal(hard?.state, Tenant_State.DEPROVISIONING);
  const gone = await settle(byToken, name);
  assert.equal(gone.state, Tenant_State.DEPROVISIONED);
  assert.ok(gone.backups.length > 0, "a hard delete without skip_backup takes a backup");

  // The audit log names who asked for each operation: the certificate's identity, or the token's.
  const cert = env("TENANTRY_CERT_ACTOR");
  const token = env("TENANTRY_TOKEN_ACTOR");
  const requests = (await allEvents(client, name))
    .filter((event) => event.kind === TenantEvent_Kind.REQUESTED)
    .map((event) => [event.step, event.actor]);
  assert.deepEqual(requests, [
    ["provision", cert],
    ["suspend", token],
    ["resume", cert],
    ["deprovision", token],
    ["undelete", cert],
    ["deprovision", token],
  ]);
});

test("ListTenants pages through next_page_token", { timeout: 240_000 }, async () => {
  const client = createTenantClient(credentials());
  // RFC 3339 without fractions; a few seconds early, as the server's clock may differ a little.
  const since = new Date(Date.now() - 5_000).toISOString().replace(/\.\d+Z$/, "Z");
  const ids = [newId(), newId(), newId()];
  await Promise.all(ids.map((id) => client.createTenant(spec(id), CALL)));
  const settled = await Promise.all(ids.map((id) => settle(client, `tenants/${id}`)));
  assert.deepEqual(
    settled.map((t) => t.state),
    ids.map(() => Tenant_State.ACTIVE),
  );

  // Other tests' tenants made meanwhile may be listed too; ours must all be, once each.
  const filter = `create_time >= "${since}"`;
  const pages: string[][] = [];
  let pageToken = "";
  do {
    const page = await client.listTenants({ pageSize: 2, pageToken, filter }, CALL);
    assert.ok(page.tenants.length <= 2, `a page of ${page.tenants.length} tenants for page_size 2`);
    pages.push(page.tenants.map((t) => t.tenantId));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  const listed = pages.flat();
  assert.ok(pages.length >= 2, `${listed.length} tenants in ${pages.length} page(s)`);
  assert.equal(new Set(listed).size, listed.length, `listed twice: ${listed}`);
  assert.deepEqual(listed, [...listed].sort(), "in tenant id order");
  for (const id of ids) {
    assert.ok(listed.includes(id), `${id} is not listed`);
  }
});

test("errors carry ErrorInfo and BadRequest field violations", { timeout: 60_000 }, async () => {
  const client = createTenantClient(credentials());
  const bad = { ...spec(newId(), "not-an-email"), tenantId: "Not_An_Id" };
  const invalid = apiError(await failure(() => client.createTenant(bad, CALL)));
  assert.deepEqual(
    [Code[invalid.code], invalid.reason, invalid.domain],
    [Code[Code.InvalidArgument], "INVALID_ARGUMENT", "tenantry.dev"],
  );
  assert.deepEqual(
    invalid.fieldViolations.map((v) => v.field),
    ["tenant_id", "tenant.admin.email"],
  );
  assert.ok(invalid.fieldViolations.every((v) => v.description !== ""), "each violation says what is wrong");

  const missing = newId();
  const notFound = apiError(await failure(() => client.getTenant({ name: `tenants/${missing}` }, CALL)));
  assert.deepEqual(
    [Code[notFound.code], notFound.reason, notFound.metadata["tenant_id"]],
    [Code[Code.NotFound], "TENANT_NOT_FOUND", missing],
  );

  // The token is sent: a bad one is refused even on a connection with a good certificate.
  const badToken = createTenantClient({ ...credentials(), token: "not-a-token" });
  const refused = apiError(await failure(() => badToken.getTenant({ name: `tenants/${missing}` }, CALL)));
  assert.equal(Code[refused.code], Code[Code.Unauthenticated]);
  assert.ok(refused.reason?.startsWith("TOKEN_"), `reason ${refused.reason}`);
});
