/**
 * Outbound events over their real surfaces (issue 17, DESIGN.md §14):
 * createEventEndpoint and `authhub events endpoint add`; changes made through
 * GraphQL and the Data Sync API delivered by the real worker to a local HTTP
 * receiver that verifies each Standard Webhooks signature with the `svix`
 * package's verifier; order per entity; retries after a failing answer with
 * the same webhook-id; failure and disabling after 3 days, visible in the
 * delivery log; no echo of a store's own sync to that store; the address rules
 * (SSRF) at registration and at every attempt, and redirects never followed.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { jest } from "@jest/globals";
import request from "supertest";
import { Webhook } from "svix";
import { signRequest } from "../../client/index.js";
import type { Identity } from "../../db/claims.js";
import { makePool } from "../../db/pools.js";
import { parseMasterKey } from "../../server/auth/masterKey.js";
import { createEventEndpoint } from "../../server/events/endpoints.js";
import { makeLogger } from "../../server/logger.js";
import { issueApiKey } from "../../server/openapi/issue.js";
import { resolveChecked } from "../../worker/events/address.js";
import { sendEvent } from "../../worker/events/send.js";
import { configureWorker } from "../../worker/context.js";
import { startWorker, type WorkerHandle } from "../../worker/runner.js";
import type { TestDatabase } from "../helpers/db.js";
import { cast, type Fixtures } from "../helpers/fixtures.js";
import { cliJson } from "../helpers/process.js";
import { errorCodes as codes, graphql, useFixtureServer, type TestServer } from "../helpers/server.js";
import { runTask } from "../helpers/worker.js";

jest.setTimeout(120_000);

const MASTER_KEY = Buffer.alloc(32, 11).toString("base64");

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;

useFixtureServer(
  (database, fixtures, server) => {
    db = database;
    f = fixtures;
    srv = server;
  },
  { AUTHHUB_MASTER_KEY: MASTER_KEY },
);

// --- a receiver ---------------------------------------------------------------

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

interface Receiver {
  url: string;
  received: Received[];
  /** What to answer the nth request (0-based) to a path. */
  answer: (r: Received, nth: number) => { status: number; location?: string };
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const counts = new Map<string, number>();
  const receiver: Receiver = {
    url: "",
    received: [],
    answer: () => ({ status: 204 }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const r: Received = { path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), at: Date.now() };
      receiver.received.push(r);
      const nth = counts.get(r.path) ?? 0;
      counts.set(r.path, nth + 1);
      const a = receiver.answer(r, nth);
      res.writeHead(a.status, a.location ? { location: a.location } : {});
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return receiver;
}

/** Verifies a received request as a receiver would: the svix package's Standard Webhooks verifier. */
function verified(secret: string, r: Received): { id: string; type: string; data: Record<string, unknown>; tenantId: string } {
  const headers = {
    "webhook-id": String(r.headers["webhook-id"]),
    "webhook-timestamp": String(r.headers["webhook-timestamp"]),
    "webhook-signature": String(r.headers["webhook-signature"]),
  };
  return new Webhook(secret).verify(r.body, headers) as ReturnType<typeof verified>;
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** GraphQL as `who`. */
const gql = (who: Identity | null, query: string, variables: Record<string, unknown> = {}) => graphql(srv, who, query, variables);

const CREATE = `mutation($url: String!, $types: [String!], $store: UUID) {
  createEventEndpoint(input: { url: $url, eventTypes: $types, storeId: $store }) { secret eventEndpoint { rowId url eventTypes enabled } } }`;

async function addEndpoint(url: string, types: string[], storeId: string | null = null): Promise<{ id: string; secret: string }> {
  const r = await gql(cast(f, f.a).tenantAdmin, CREATE, { url, types, store: storeId });
  expect(r.errors).toBeUndefined();
  return { id: r.data!.createEventEndpoint.eventEndpoint.rowId, secret: r.data!.createEventEndpoint.secret };
}

const renameMember = (name: string) =>
  gql(
    cast(f, f.a).tenantAdmin,
    `mutation($t: UUID!, $id: UUID!, $n: DisplayText!) { updateUser(input: { tenantId: $t, rowId: $id, patch: { displayName: $n } }) { user { rowId } } }`,
    {
      t: f.a.id,
      id: f.a.users.member,
      n: name,
    },
  );

// --- registration ---------------------------------------------------------------

describe("registering endpoints", () => {
  test("tenant admins create endpoints (the secret shown once); org admins, users and other tenants cannot create or see them", async () => {
    const r = await gql(cast(f, f.a).tenantAdmin, CREATE, { url: "https://hooks.example.com/authhub", types: ["retail.order.*", "identity.*"] });
    expect(r.errors).toBeUndefined();
    expect(r.data!.createEventEndpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(r.data!.createEventEndpoint.eventEndpoint).toMatchObject({ url: "https://hooks.example.com/authhub", eventTypes: ["retail.order.*", "identity.*"], enabled: true });
    const id = r.data!.createEventEndpoint.eventEndpoint.rowId as string;
    // Stored encrypted, never as given.
    const stored = await db.owner.query<{ secret_encrypted: string }>("select secret_encrypted from authhub_private.event_endpoint_secrets where endpoint_id = $1", [id]);
    expect(stored.rows[0]!.secret_encrypted).toMatch(/^v1\./);
    expect(stored.rows[0]!.secret_encrypted).not.toContain(r.data!.createEventEndpoint.secret.slice(6, 20));
    expect(JSON.stringify((await db.owner.query("select new from authhub.audit_events where table_name = 'event_endpoint_secrets'")).rows)).not.toContain("secret_encrypted");

    for (const who of [cast(f, f.a).orgAdmin, cast(f, f.a).member]) {
      expect(codes(await gql(who, CREATE, { url: "https://hooks.example.com/x" }))).toEqual(["forbidden"]);
      expect((await gql(who, "{ eventEndpoints { totalCount } }")).data!.eventEndpoints.totalCount).toBe(0);
    }
    expect((await gql(cast(f, f.b).tenantAdmin, "{ eventEndpoints { totalCount } }")).data!.eventEndpoints.totalCount).toBe(0);
    expect((await gql(cast(f, f.a).tenantAdmin, "{ eventEndpoints { totalCount } }")).data!.eventEndpoints.totalCount).toBeGreaterThanOrEqual(1);
    await db.owner.query("delete from authhub.event_endpoints where id = $1", [id]);
  });

  test("https only, plain http to loopback only, and well-formed type patterns", async () => {
    const admin = cast(f, f.a).tenantAdmin;
    for (const url of ["http://hooks.example.com/x", "ftp://hooks.example.com/x", "https://user:pw@hooks.example.com/x", "not a url"]) {
      const r = await gql(admin, CREATE, { url });
      expect(codes(r)).toEqual(["invalid_input"]);
      expect(r.errors![0]!.extensions!.details[0].field).toBe("url");
    }
    for (const types of [["retail..order"], [], ["identity.user.updated.extra"], Array.from({ length: 51 }, () => "*")]) {
      const r = await gql(admin, CREATE, { url: "https://hooks.example.com/x", types });
      expect(codes(r)).toEqual(["invalid_input"]);
      expect(r.errors![0]!.extensions!.details[0].field).toBe("eventTypes");
    }
    expect((await db.owner.query("select 1 from authhub.event_endpoints")).rowCount).toBe(0);
  });

  test("in production: no private, loopback or link-local address, literal or resolved, and no plain http at all", async () => {
    const make = (url: string) => createEventEndpoint(db.owner, srv.masterKey, { url, tenantId: f.a.id }, { production: true });
    for (const url of [
      "https://10.0.0.8/hook",
      "https://172.16.3.4/hook",
      "https://192.168.1.1/hook",
      "https://169.254.169.254/latest/meta-data",
      "https://127.0.0.1/hook",
      "https://[::1]/hook",
      "https://[fe80::1]/hook",
      "https://[::ffff:10.0.0.1]/hook",
      "https://[::ffff:a9fe:a9fe]/hook",
      "https://[64:ff9b::a00:1]/hook",
      "https://[2002:a00:1::]/hook",
      "https://[fd00::1]/hook",
      "https://100.64.0.1/hook",
      "https://localhost/hook",
      "http://hooks.example.com/hook",
      "http://127.0.0.1/hook",
    ]) {
      await expect(make(url)).rejects.toMatchObject({ code: "invalid_input", details: [{ field: "url" }] });
    }
    // A name is resolved and what it resolves to is checked.
    await expect(resolveChecked(new URL("https://localhost/hook"), true)).rejects.toThrow(/private, loopback or link-local/);
    expect(await resolveChecked(new URL("https://93.184.215.14/hook"), true)).toEqual({ address: "93.184.215.14", family: 4 });
    expect(await resolveChecked(new URL("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook"), true)).toEqual({ address: "2606:2800:21f:cb07:6820:80da:af6b:8b2c", family: 6 });
    expect(await resolveChecked(new URL("https://[::ffff:5db8:d70e]/hook"), true)).toMatchObject({ family: 6 });
    expect((await db.owner.query("select 1 from authhub.event_endpoints")).rowCount).toBe(0);
  });

  test("npx authhub events endpoint add prints the id and the secret once; list shows the endpoint without it", async () => {
    const env = { NODE_ENV: "test", DATABASE_URL: db.ownerUrl, AUTHHUB_MASTER_KEY: MASTER_KEY };
    const added = await cliJson<{ id: string; secret: string; event_types: string[] }>(
      ["events", "endpoint", "add", "--tenant", f.a.slug, "--url", "https://cli.example.com/hook", "--types", "identity.user.*,retail.*"],
      env,
    );
    expect(added.secret).toMatch(/^whsec_/);
    expect(added.event_types).toEqual(["identity.user.*", "retail.*"]);
    const listed = await cliJson<{ endpoints: { id: string; url: string }[] }>(["events", "endpoint", "list", "--tenant", f.a.slug], env);
    expect(listed.endpoints.map((e) => e.id)).toContain(added.id);
    expect(JSON.stringify(listed)).not.toContain(added.secret);
    // keys rewrap moves it to a new master key, and it still opens.
    const rewrapped = await cliJson<{ rewrapped: number }>(["keys", "rewrap"], {
      ...env,
      AUTHHUB_MASTER_KEY: `2:${Buffer.alloc(32, 12).toString("base64")}`,
      AUTHHUB_MASTER_KEY_PREVIOUS: `1:${MASTER_KEY}`,
    });
    expect(rewrapped.rewrapped).toBeGreaterThanOrEqual(1);
    const { rows } = await db.owner.query<{ secret_encrypted: string }>("select secret_encrypted from authhub_private.event_endpoint_secrets where endpoint_id = $1", [added.id]);
    expect(parseMasterKey(`2:${Buffer.alloc(32, 12).toString("base64")}`).decrypt(rows[0]!.secret_encrypted)).toBe(added.secret);
    await db.owner.query("delete from authhub.event_endpoints where id = $1", [added.id]);
  });
});

// --- delivery by the real worker -----------------------------------------------

describe("delivery", () => {
  let worker: WorkerHandle;
  let owner: ReturnType<typeof makePool>;
  let receiver: Receiver;

  beforeAll(async () => {
    owner = makePool(db.ownerUrl, { name: "worker", max: 4, acquireTimeoutMs: 30_000 });
    worker = await startWorker({ ownerPool: owner, logger: makeLogger("silent"), masterKey: srv.masterKey, clerkApiUrl: "http://127.0.0.1:9", production: false });
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await worker?.stop();
    await owner?.end();
    await receiver?.close();
  });

  test("changes are delivered signed (verified with the svix verifier), each entity's in order, and logged as delivered", async () => {
    const ep = await addEndpoint(`${receiver.url}/identity`, ["identity.user.*"]);
    // A slow receiver, so later events are ready while earlier ones are still in flight.
    receiver.answer = (r) => (r.path === "/identity" ? { status: 200 } : { status: 204 });
    for (let i = 1; i <= 8; i++) expect((await renameMember(`Member ${i}`)).errors).toBeUndefined();
    await db.owner.query("update authhub.users set display_name = 'Outsider 1' where id = $1", [f.a.users.outsider]);
    const got = await until("ten deliveries", () => {
      const mine = receiver.received.filter((r) => r.path === "/identity");
      return mine.length >= 9 && mine;
    });
    const events = got.map((r) => verified(ep.secret, r));
    for (const [i, e] of events.entries()) {
      expect(e.type).toBe("identity.user.updated");
      expect(e.tenantId).toBe(f.a.id);
      expect(got[i]!.headers["webhook-id"]).toBe(e.id);
      expect(got[i]!.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    }
    const memberNames = events.filter((e) => e.data.rowId === f.a.users.member).map((e) => e.data.displayName);
    expect(memberNames).toEqual(Array.from({ length: 8 }, (_, i) => `Member ${i + 1}`));
    expect(events.filter((e) => e.data.rowId === f.a.users.outsider)).toHaveLength(1);
    // A tampered body does not verify.
    expect(() => verified(ep.secret, { ...got[0]!, body: got[0]!.body.replace("Member", "Hacker") })).toThrow();

    // The delivery log, in GraphQL, for the tenant's admin only.
    const log = await until("the log to show every delivery", async () => {
      const r = await gql(
        cast(f, f.a).tenantAdmin,
        `query($id: UUID!) { eventEndpoints(condition: { rowId: $id }) { nodes { lastSuccessAt eventDeliveries { totalCount nodes { state attempts lastStatus eventType event { type payload } } } } } }`,
        { id: ep.id },
      );
      expect(r.errors).toBeUndefined();
      const node = r.data?.eventEndpoints.nodes[0];
      return node?.eventDeliveries.nodes.every((d: { state: string }) => d.state === "delivered") && node.eventDeliveries.totalCount === 9 && node;
    });
    expect(log.lastSuccessAt).not.toBeNull();
    expect(log.eventDeliveries.nodes[0]).toMatchObject({ state: "delivered", attempts: 1, lastStatus: 200, eventType: "identity.user.updated" });
    expect((await gql(cast(f, f.b).tenantAdmin, "{ eventDeliveries { totalCount } }")).data!.eventDeliveries.totalCount).toBe(0);
    expect((await gql(cast(f, f.a).orgAdmin, "{ eventDeliveries { totalCount } events { totalCount } }")).data).toEqual({
      eventDeliveries: { totalCount: 0 },
      events: { totalCount: 0 },
    });
    await db.owner.query("delete from authhub.event_endpoints where id = $1", [ep.id]);
  });

  test("a failing answer is retried with the same webhook-id after the first backoff, and the entity's next event waits for it", async () => {
    const ep = await addEndpoint(`${receiver.url}/flaky`, ["identity.user.*"]);
    receiver.answer = (r, nth) => (r.path === "/flaky" && nth === 0 ? { status: 503 } : { status: 204 });
    await renameMember("Flaky 1");
    await renameMember("Flaky 2");
    const got = await until("three requests", () => {
      const mine = receiver.received.filter((r) => r.path === "/flaky");
      return mine.length >= 3 && mine;
    });
    const [first, retry, next] = got.map((r) => ({ r, e: verified(ep.secret, r) }));
    expect(first!.e.data.displayName).toBe("Flaky 1");
    expect(retry!.r.headers["webhook-id"]).toBe(first!.r.headers["webhook-id"]);
    // The first retry within 10 s, not at once (5 s, with the worker's polling).
    expect(retry!.r.at - first!.r.at).toBeGreaterThanOrEqual(4_000);
    expect(next!.e.data.displayName).toBe("Flaky 2");
    const { rows } = await db.owner.query<{ state: string; attempts: number }>("select state, attempts from authhub.event_deliveries where endpoint_id = $1 and event_id = $2", [
      ep.id,
      first!.e.id,
    ]);
    expect(rows[0]).toEqual({ state: "delivered", attempts: 2 });
    await db.owner.query("delete from authhub.event_endpoints where id = $1", [ep.id]);
  });

  test("after 3 days of failure the delivery is failed and the endpoint disabled, with the reason, both visible in GraphQL", async () => {
    const ep = await addEndpoint(`${receiver.url}/dead`, ["identity.user.*"]);
    receiver.answer = (r) => (r.path === "/dead" ? { status: 500 } : { status: 204 });
    // Its first attempt fails now...
    await renameMember("Dead 1");
    await until(
      "the first failure",
      async () => (await db.owner.query("select 1 from authhub.event_deliveries where endpoint_id = $1 and attempts = 1 and last_status = 500", [ep.id])).rowCount,
    );
    // ...and it has been failing for three days: the next attempt is its last.
    await db.owner.query("update authhub.event_deliveries set created_at = now() - interval '3 days 1 minute', next_attempt_at = now() where endpoint_id = $1", [ep.id]);
    await db.owner.query("update authhub.event_endpoints set failing_since = now() - interval '3 days 1 minute' where id = $1", [ep.id]);
    await db.owner.query("select authhub_private.queue_event_delivery($1, $2, null)", [f.a.id, ep.id]);
    const r = await until("the endpoint to be disabled", async () => {
      const q = await gql(
        cast(f, f.a).tenantAdmin,
        `query($id: UUID!) { eventEndpoints(condition: { rowId: $id }) { nodes { enabled disabledReason eventDeliveries { nodes { state attempts lastError } } } } }`,
        { id: ep.id },
      );
      expect(q.errors).toBeUndefined();
      const node = q.data?.eventEndpoints.nodes[0];
      return node && !node.enabled && node;
    });
    expect(r.disabledReason).toMatch(/^Disabled by AuthHub: every delivery has failed since .*HTTP 500/);
    expect(r.eventDeliveries.nodes).toEqual([{ state: "failed", attempts: 2, lastError: "HTTP 500" }]);
    // Disabled: a new change is not queued there (the outbox is written in the change's own transaction, so this is final).
    const queued = async () => (await db.owner.query<{ event_type: string }>("select event_type from authhub.event_deliveries where endpoint_id = $1", [ep.id])).rows;
    expect(await queued()).toHaveLength(1);
    expect((await renameMember("Dead 2")).errors).toBeUndefined();
    expect(await queued()).toHaveLength(1);
    await db.owner.query("delete from authhub.event_endpoints where id = $1", [ep.id]);
  });

  test("a store's own sync is not sent back to the store's endpoint; an admin's edit of its order is, and the tenant-wide endpoint gets both", async () => {
    const made = await gql(
      cast(f, f.a).tenantAdmin,
      `mutation { createStore(input: { code: "lisbon", name: "Lisbon", currency: "EUR", timezone: "Europe/Lisbon", parentId: "${f.a.orgs.child}" }) { store { rowId } } }`,
    );
    expect(made.errors).toBeUndefined();
    const storeId = made.data!.createStore.store.rowId as string;
    const storeEp = await addEndpoint(`${receiver.url}/store`, ["retail.order.*"], storeId);
    const hubEp = await addEndpoint(`${receiver.url}/backend`, ["retail.order.*"]);
    receiver.answer = () => ({ status: 204 });
    const key = await issueApiKey(db.owner, srv.masterKey, { name: "Lisbon till", tenantId: f.a.id, organizationId: storeId, scopes: ["sync:write", "retail:read"] });
    const body = JSON.stringify({
      rows: [
        {
          externalId: "o-1",
          version: 1,
          data: { number: "L-1", status: "paid", currency: "EUR", placedAt: "2026-03-01T10:00:00+00:00", lines: [{ lineNo: 1, sku: "TEA-1", quantity: 2, unitPriceMinor: 450 }] },
        },
      ],
    });
    const path = "/open/v1/sync/orders";
    const synced = await request(srv.app)
      .post(path)
      .set({ ...signRequest({ keyId: key.keyId, secret: key.secret, method: "POST", url: path, body }), "Idempotency-Key": "events-1", "Content-Type": "application/json" })
      .send(body);
    expect(synced.status).toBe(200);
    expect(synced.body.results[0]).toEqual({ externalId: "o-1", status: "applied" });
    const fromBackend = await until("the sync's event at the backend", () => receiver.received.find((r) => r.path === "/backend"));
    const created = verified(hubEp.secret, fromBackend);
    expect(created.type).toBe("retail.order.created");
    expect(created).toMatchObject({ data: { externalId: "o-1", number: "L-1", storeId }, actor: { type: "apiKey", id: key.id } });

    // The hub's admin marks it fulfilled: that goes to the store too.
    const orderId = created.data.rowId as string;
    const edited = await gql(
      cast(f, f.a).tenantAdmin,
      `mutation($t: UUID!, $s: UUID!, $id: UUID!) { updateOrder(input: { tenantId: $t, storeId: $s, rowId: $id, patch: { status: "fulfilled" } }) { order { status } } }`,
      { t: f.a.id, s: storeId, id: orderId },
    );
    expect(edited.errors).toBeUndefined();
    const toStore = await until("the admin's edit at the store", () => receiver.received.find((r) => r.path === "/store"));
    expect(verified(storeEp.secret, toStore)).toMatchObject({ type: "retail.order.updated", data: { rowId: orderId, status: "fulfilled" }, actor: { type: "user" } });
    await until("the edit at the backend too", () => receiver.received.some((r) => r.path === "/backend" && verified(hubEp.secret, r).data.status === "fulfilled"));
    // Nothing of the sync was queued for the store (the outbox is written in the change's own transaction, so this is final), while the backend has it.
    const actors = async (id: string) =>
      (
        await db.owner.query<{ actor: string }>(
          "select e.payload->'actor'->>'type' as actor from authhub.event_deliveries d join authhub.events e on e.tenant_id = d.tenant_id and e.id = d.event_id where d.endpoint_id = $1 order by d.seq",
          [id],
        )
      ).rows.map((r) => r.actor);
    expect(await actors(hubEp.id)).toContain("apiKey");
    expect(await actors(storeEp.id)).toEqual(["user"]);
    expect(receiver.received.filter((r) => r.path === "/store").map((r) => verified(storeEp.secret, r).data.status)).toEqual(["fulfilled"]);
    await db.owner.query("delete from authhub.event_endpoints where id = any($1)", [[storeEp.id, hubEp.id]]);
  });

  test("an endpoint that does not answer in time fails the attempt, with why", async () => {
    const hanging = createServer(() => undefined);
    await new Promise<void>((resolve) => hanging.listen(0, "127.0.0.1", resolve));
    try {
      const attempt = await sendEvent(
        { url: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/slow`, secret: `whsec_${Buffer.alloc(32, 3).toString("base64")}`, eventId: "evt", body: "{}" },
        { production: false, timeoutMs: 500 },
      );
      expect(attempt).toEqual({ status: null, error: expect.stringMatching(/no answer within 500 ms/) });
    } finally {
      hanging.closeAllConnections();
      await new Promise((resolve) => hanging.close(resolve));
    }
  });

  test("a redirect is an answer, never followed", async () => {
    const ep = await addEndpoint(`${receiver.url}/moved`, ["identity.user.*"]);
    receiver.answer = (r) => (r.path === "/moved" ? { status: 302, location: `${receiver.url}/elsewhere` } : { status: 204 });
    await renameMember("Moved");
    await until(
      "the redirect to be recorded",
      async () => (await db.owner.query("select 1 from authhub.event_deliveries where endpoint_id = $1 and last_status = 302", [ep.id])).rowCount,
    );
    const { rows } = await db.owner.query<{ last_error: string; state: string }>("select last_error, state from authhub.event_deliveries where endpoint_id = $1", [ep.id]);
    expect(rows[0]).toEqual({ last_error: "HTTP 302: redirects are not followed", state: "pending" });
    expect(receiver.received.filter((r) => r.path === "/elsewhere")).toEqual([]);
    await db.owner.query("delete from authhub.event_endpoints where id = $1", [ep.id]);
  });
});

// --- production's address rules at the attempt ----------------------------------

describe("in production, at every attempt", () => {
  let receiver: Receiver;
  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(async () => {
    configureWorker({ masterKey: srv.masterKey, clerkApiUrl: "http://127.0.0.1:9", production: false });
    await receiver.close();
  });

  test("an endpoint whose host now resolves to a private or loopback address is refused without a request", async () => {
    // Registered when it pointed elsewhere (or before production): written as the operator could.
    const ep = (
      await db.owner.query<{ id: string }>("select (e).id from (select authhub_private.create_event_endpoint($1, '{identity.user.*}', null, null, $2, $3) as e) x", [
        receiver.url.replace("127.0.0.1", "localhost") + "/private",
        srv.masterKey.encrypt("whsec_" + Buffer.alloc(32, 1).toString("base64")),
        f.a.id,
      ])
    ).rows[0]!.id;
    await db.owner.query("update authhub.users set display_name = 'Private' where id = $1", [f.a.users.member]);
    configureWorker({ masterKey: srv.masterKey, clerkApiUrl: "http://127.0.0.1:9", production: true });
    await runTask(db, "event_deliveries__send", { tenant_id: f.a.id, endpoint_id: ep });
    const { rows } = await db.owner.query<{ attempts: number; last_status: number | null; last_error: string }>(
      "select attempts, last_status, last_error from authhub.event_deliveries where endpoint_id = $1",
      [ep],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]!.attempts).toBe(1);
    expect(rows[0]!.last_status).toBeNull();
    expect(rows[0]!.last_error).toMatch(/^Refused: /);
    expect(receiver.received).toEqual([]);
    await db.owner.query("delete from authhub.event_endpoints where id = $1", [ep]);
  });
});
