/**
 * `npx authhub seed demo` against a real database and a listening server: a
 * rerun changes no row and writes no audit event; what it prints works as
 * printed (the token commands, the GraphQL curl, the signed curl and the node
 * one-liner); the key holds its scopes only; the custom role reads one subtree.
 */
import { jest } from "@jest/globals";
import { decodeJwt } from "jose";
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import path from "node:path";
import request from "supertest";
import { Webhook } from "svix";
import { signRequest } from "../../client/index.js";
import { runCli } from "../../server/cli.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";
import { startTestServer, TEST_ISSUER, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let srv: TestServer;
let env: Record<string, string>;
/** The first run's --json output, read by expect(). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON, as every test here reads it
let first: Record<string, any>;
/** A rerun adds no retail row. */
const NO_RETAIL_ROWS = { stores: 0, products: 0, variants: 0, customers: 0, orders: 0, order_lines: 0 };

const root = path.join(import.meta.dirname, "../..");

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const out = jest.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  const err = jest.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  });
  try {
    return { code: await runCli(args, env), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

/** Runs a printed snippet with bash in the project directory, with the CLI's environment. */
const shell = (script: string, extra: Record<string, string> = {}) =>
  new Promise<string>((resolve, reject) =>
    execFile("bash", ["-c", script], { cwd: root, env: { ...process.env, ...env, ...extra } }, (e, stdout, stderr) =>
      e ? reject(new Error(`${e.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
const tools = ["bash", "curl"].every((tool) => {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
});

/** Row counts of every table AuthHub owns. */
async function counts(): Promise<Record<string, number>> {
  const { rows } = await db.owner.query<{ t: string }>(
    "select format('%I.%I', schemaname, tablename) as t from pg_tables where schemaname in ('authhub', 'authhub_private') order by 1",
  );
  const out: Record<string, number> = {};
  for (const { t } of rows) out[t] = (await db.owner.query<{ n: number }>(`select count(*)::int as n from ${t}`)).rows[0]!.n;
  return out;
}

const graphql = (token: string, query: string) => request(srv.app).post("/graphql").set("Authorization", `Bearer ${token}`).send({ query });

async function tokenFor(email: string): Promise<string> {
  const r = await cli("token", "--tenant", "demo", "--email", email);
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

beforeAll(async () => {
  db = await createTestDatabase();
  const masterKey = randomBytes(32).toString("base64");
  srv = await startTestServer(db, { AUTHHUB_MASTER_KEY: masterKey });
  await new Promise<void>((resolve) => srv.server.listen(0, "127.0.0.1", resolve));
  // The printed commands name the server the CLI's HOST and PORT describe: this one.
  const port = (srv.server.address() as AddressInfo).port;
  env = { NODE_ENV: "test", DATABASE_URL: db.ownerUrl, AUTHHUB_MASTER_KEY: masterKey, AUTHHUB_ISSUER: TEST_ISSUER, HOST: "127.0.0.1", PORT: String(port) };
  const r = await cli("seed", "demo", "--json");
  expect(r).toMatchObject({ code: 0, stderr: "" });
  first = JSON.parse(r.stdout);
});
afterAll(async () => {
  await new Promise((resolve) => srv.server.close(resolve));
  await srv.close();
  await db.close();
});

test("the first run seeds nested organizations, a user at every level, a custom role, a key and an endpoint, audited as the CLI", async () => {
  expect(first.tenant).toMatchObject({ slug: "demo", created: true });
  expect(first.organizations.map((o: { slug: string; parent: string | null }) => [o.slug, o.parent])).toEqual([
    ["seller-one", null],
    ["store-a", "seller-one"],
    ["store-b", "seller-one"],
    ["seller-two", null],
  ]);
  expect(first.users.map((u: { email: string; level: string }) => [u.email, u.level])).toEqual([
    ["super@demo.example", "SUPER_ADMIN"],
    ["admin@demo.example", "TENANT_ADMIN"],
    ["seller-admin@demo.example", "USER"],
    ["support@demo.example", "USER"],
    ["clerk-a@demo.example", "USER"],
    ["clerk-b@demo.example", "USER"],
    ["seller-two@demo.example", "USER"],
  ]);
  expect(first.roles).toEqual([
    expect.objectContaining({ key: "support-agent", permissions: ["membership:read", "user:read"], assignments: [expect.objectContaining({ organization: "seller-one" })] }),
  ]);
  expect(first.api_key).toMatchObject({ key_id: expect.stringMatching(/^ak_/), secret: expect.stringMatching(/^sk_/), scopes: ["org:read", "user:read"], created: true });
  expect(first.webhook_endpoint).toMatchObject({ path: `/webhooks/clerk/${first.webhook_endpoint.id}`, secret: expect.stringMatching(/^whsec_/), created: true });
  expect(first.changed).toEqual({
    tenants: 1,
    organizations: 6,
    users: 7,
    memberships: 4,
    roles: 1,
    role_permissions: 2,
    role_assignments: 1,
    api_keys: 1,
    webhook_endpoints: 1,
    // The retail step's defaults: four stores (store-a, store-b and two shops), 200 orders.
    stores: 4,
    products: 160,
    variants: 320,
    customers: 38,
    orders: 200,
    order_lines: 606,
  });
  // The nesting is real: store-a's parent is seller-one (and so is the retail step's shop-0004).
  const { rows } = await db.owner.query("select c.slug from authhub.organizations c join authhub.organizations p on p.id = c.parent_id where p.slug = 'seller-one' order by 1");
  expect(rows.map((r) => r.slug)).toEqual(["shop-0004", "store-a", "store-b"]);
  const actors = await db.owner.query("select distinct actor from authhub.audit_events where tenant_id = $1", [first.tenant.id]);
  expect(actors.rows).toEqual([{ actor: "system:cli:seed-demo" }]);
});

test("a second run changes nothing: the same rows in every table, no audit event, and no secret printed", async () => {
  const before = await counts();
  const r = await cli("seed", "demo", "--json");
  expect(r.code).toBe(0);
  const again = JSON.parse(r.stdout);
  // Every table, audit_events included: no row written, so no audit event either.
  expect(await counts()).toEqual(before);
  expect(Object.values(again.changed).every((n) => n === 0)).toBe(true);
  expect(again.tenant).toEqual({ ...first.tenant, created: false });
  expect(again.users).toEqual(first.users);
  expect(again.organizations).toEqual(first.organizations);
  expect(again.api_key).toEqual({ id: first.api_key.id, key_id: first.api_key.key_id, scopes: first.api_key.scopes, created: false });
  expect(again.webhook_endpoint).toEqual({ id: first.webhook_endpoint.id, path: first.webhook_endpoint.path, issuer: first.webhook_endpoint.issuer, created: false });
  expect(again.try.openApi.curl).toBeNull();

  const human = await cli("seed", "demo");
  expect(human.code).toBe(0);
  expect(human.stdout).toMatch(/already seeded, nothing changed/);
  expect(human.stdout).toContain(`npx authhub apikey rotate --key ${first.api_key.key_id}`);
  expect(human.stdout).not.toMatch(/sk_[0-9A-Za-z]{43}|whsec_[A-Za-z0-9+/]/);
  expect(await counts()).toEqual(before);
});

test("each printed token command mints a token GraphQL accepts, at its level", async () => {
  // The token's role: the user's level, or ORG_ADMIN where they administer an organization.
  const expected: Record<string, string> = {
    "super@demo.example": "SUPER_ADMIN",
    "admin@demo.example": "TENANT_ADMIN",
    "seller-admin@demo.example": "ORG_ADMIN",
  };
  expect(first.try.tokens).toHaveLength(7);
  for (const { email, command } of first.try.tokens as { email: string; command: string }[]) {
    expect(command).toBe(`npx authhub token --tenant demo --email ${email}`);
    const r = await cli(...command.split(" ").slice(2));
    expect(r.code).toBe(0);
    const token = r.stdout.trim();
    expect(decodeJwt(token).roles).toEqual([expected[email] ?? "USER"]);
    const res = await graphql(token, "{ currentUser { email } }");
    expect(res.body.data.currentUser).toEqual({ email });
  }
});

(tools ? test : test.skip)("the GraphQL curl and the signed Open API calls work as printed, against the listening server", async () => {
  const out = JSON.parse(await shell(first.try.graphql));
  expect(out.data.currentUser).toEqual({ email: "admin@demo.example", level: "TENANT_ADMIN" });
  expect(out.data.users.totalCount).toBe(7);

  // The curl signed when the seed ran (its nonce is spent once used).
  const signed = JSON.parse(await shell(first.try.openApi.curl));
  expect(signed.data).toHaveLength(5);
  expect(JSON.parse(await shell(first.try.openApi.curl)).error.code).toBe("unauthenticated");

  // The export line and the one-liner, signing afresh each time.
  const fresh = await shell(`${first.try.openApi.env}\n${first.try.openApi.node}\n${first.try.openApi.node}`);
  const lines = fresh.trim().split("\n");
  expect(lines).toHaveLength(2);
  for (const line of lines) expect(line).toMatch(/^200 \{"data":\[/);
});

test("a rerun's one-liner works with the secret from the first run, set by hand", async () => {
  const again = JSON.parse((await cli("seed", "demo", "--json")).stdout);
  expect(again.try.openApi.env).toBe(`export KEY_ID=${first.api_key.key_id}`);
  if (!tools) return;
  const out = await shell(`${again.try.openApi.env}\n${again.try.openApi.node}`, { SECRET: first.api_key.secret });
  expect(out).toMatch(/^200 /);
});

test("the demo key holds user:read and org:read, nothing more", async () => {
  const call = (method: "GET" | "POST", url: string, body?: string) => {
    const headers = signRequest({ keyId: first.api_key.key_id, secret: first.api_key.secret, method, url, body });
    const req = method === "GET" ? request(srv.app).get(url) : request(srv.app).post(url).set("Content-Type", "application/json");
    for (const [k, v] of Object.entries(headers)) req.set(k, v);
    return body === undefined ? req : req.send(body);
  };
  expect((await call("GET", "/open/v1/users?limit=100")).body.data).toHaveLength(7);
  // The identity seed's four and the retail step's two further stores.
  expect((await call("GET", "/open/v1/organizations")).body.data).toHaveLength(6);
  expect((await call("GET", "/open/v1/memberships")).status).toBe(403);
  const create = await call("POST", "/open/v1/users", JSON.stringify({ email: "new@demo.example" }));
  expect(create.status).toBe(403);
  expect(create.body.error.code).toBe("insufficient_scope");
});

test("the support agent's role reads the people of seller-one's subtree, and nothing of seller-two", async () => {
  const token = await tokenFor("support@demo.example");
  const res = await graphql(token, "{ users(orderBy: EMAIL_ASC) { nodes { email } } memberships { totalCount } }");
  expect(res.body.errors).toBeUndefined();
  // Members of seller-one, store-a and store-b, and the agent itself (everyone reads their own row).
  expect(res.body.data.users.nodes.map((u: { email: string }) => u.email)).toEqual([
    "clerk-a@demo.example",
    "clerk-b@demo.example",
    "seller-admin@demo.example",
    "support@demo.example",
  ]);
  expect(res.body.data.memberships.totalCount).toBe(3);
  const org = (slug: string) => first.organizations.find((o: { slug: string }) => o.slug === slug).id;
  const decide = await request(srv.app)
    .post("/v1/authorize")
    .set("Authorization", `Bearer ${token}`)
    .send({
      checks: [
        { permission: "user:read", organizationId: org("store-b") },
        { permission: "user:read", organizationId: org("seller-two") },
        { permission: "user:read" },
        { permission: "user:write", organizationId: org("store-b") },
      ],
    });
  expect(decide.body.results).toEqual([{ allowed: true }, { allowed: false }, { allowed: false }, { allowed: false }]);
  // A control: the tenant admin sees all seven.
  const all = await graphql(await tokenFor("admin@demo.example"), "{ users { totalCount } }");
  expect(all.body.data.users.totalCount).toBe(7);
});

test("the webhook endpoint accepts a delivery signed with the printed secret", async () => {
  const body = JSON.stringify({ type: "user.created", data: { id: "user_demo_1", email_addresses: [], updated_at: Date.now() } });
  const id = `msg_seed_${Date.now()}`;
  const timestamp = new Date();
  const res = await request(srv.app)
    .post(first.webhook_endpoint.path)
    .set("Content-Type", "application/json")
    .set("svix-id", id)
    .set("svix-timestamp", String(Math.floor(timestamp.getTime() / 1000)))
    .set("svix-signature", new Webhook(first.webhook_endpoint.secret).sign(id, timestamp, body))
    .send(body);
  expect(res.status).toBe(202);
});

test("a rerun puts back what was removed, and only that; a revoked demo key is replaced", async () => {
  await db.owner.query("delete from authhub.memberships m using authhub.users u where u.id = m.user_id and u.email = 'clerk-b@demo.example'");
  await db.owner.query("select authhub.revoke_api_key($1)", [first.api_key.id]);
  const last = (await db.owner.query<{ id: string }>("select coalesce(max(id), 0) as id from authhub.audit_events")).rows[0]!.id;
  const r = JSON.parse((await cli("seed", "demo", "--json")).stdout);
  expect(r.changed).toEqual({
    tenants: 0,
    organizations: 0,
    users: 0,
    memberships: 1,
    roles: 0,
    role_permissions: 0,
    role_assignments: 0,
    api_keys: 1,
    webhook_endpoints: 0,
    ...NO_RETAIL_ROWS,
  });
  expect(r.api_key).toMatchObject({ created: true, secret: expect.stringMatching(/^sk_/) });
  expect(r.api_key.key_id).not.toBe(first.api_key.key_id);
  const added = await db.owner.query("select table_name, operation, actor from authhub.audit_events where id > $1 order by table_name", [last]);
  expect(added.rows.map((e) => `${e.table_name} ${e.operation} ${e.actor}`)).toEqual([
    "api_key_secrets INSERT system:cli:seed-demo",
    "api_keys INSERT system:cli:seed-demo",
    "memberships INSERT system:cli:seed-demo",
  ]);
});

test("--tenant seeds another tenant with its own e-mails; the human output carries the secrets once and a signed curl", async () => {
  const r = await cli("seed", "demo", "--tenant", "shop");
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^Demo tenant shop \(.*\): created tenants 1, organizations 6, users 7/);
  expect(r.stdout).toContain("npx authhub token --tenant shop --email admin@shop.example");
  expect(r.stdout).toMatch(/Its secret is shown this once: sk_[0-9A-Za-z]{43}/);
  expect(r.stdout).toMatch(/curl -s 'http:\/\/127\.0\.0\.1:\d+\/open\/v1\/users\?limit=5' -H 'X-Api-Key: ak_/);
  expect(r.stdout).toMatch(/signing secret is shown this once: whsec_/);
  const { rows } = await db.owner.query("select count(*)::int as n from authhub.users u join authhub.tenants t on t.id = u.tenant_id where t.slug = 'shop'");
  expect(rows[0].n).toBe(7);
});

test("--stores and --orders fill the retail hub: two sellers' stores in several zones and currencies, totals from the lines, rollups folded, and a larger rerun adds only the difference", async () => {
  const r = JSON.parse((await cli("seed", "demo", "--tenant", "mall", "--stores", "8", "--orders", "2000", "--json")).stdout);
  expect(r.changed).toMatchObject({ stores: 8, orders: 2000 });
  const tenant = (await db.owner.query("select id from authhub.tenants where slug = 'mall'")).rows[0].id;
  const stores = await db.owner.query(
    `select count(*)::int as n, count(distinct s.timezone)::int as zones, count(distinct s.currency)::int as currencies,
            count(distinct p.slug) filter (where p.slug in ('seller-one', 'seller-two'))::int as sellers
     from retail.stores s join authhub.organizations o on o.tenant_id = s.tenant_id and o.id = s.id
     join authhub.organizations p on p.tenant_id = o.tenant_id and p.id = o.parent_id where s.tenant_id = $1`,
    [tenant],
  );
  expect(stores.rows[0]).toEqual({ n: 8, zones: expect.any(Number), currencies: expect.any(Number), sellers: 2 });
  expect(stores.rows[0].zones).toBeGreaterThan(2);
  expect(stores.rows[0].currencies).toBeGreaterThan(2);
  // Every order's total is the sum of its one to five lines, in its store's currency and local day.
  const orders = await db.owner.query(
    `select count(*) filter (where o.total_minor is distinct from l.sum or o.currency <> s.currency
                              or o.local_date <> (o.placed_at at time zone s.timezone)::date or l.n not between 1 and 5)::int as wrong,
            count(distinct o.status)::int as statuses, count(*) filter (where o.status in ('paid', 'fulfilled'))::float / count(*) as counted
     from retail.orders o join retail.stores s on s.tenant_id = o.tenant_id and s.id = o.store_id
     join lateral (select count(*) as n, sum(quantity * unit_price_minor) as sum from retail.order_lines x
                   where x.tenant_id = o.tenant_id and x.store_id = o.store_id and x.order_id = o.id) l on true
     where o.tenant_id = $1`,
    [tenant],
  );
  expect(orders.rows[0]).toMatchObject({ wrong: 0, statuses: 5 });
  expect(orders.rows[0].counted).toBeGreaterThan(0.7);
  // The rollups answer at once, and agree with the raw orders.
  const drift = await db.owner.query(
    `select count(*)::int as n from (
       select store_id, local_date, count(*)::int as orders, sum(total_minor)::bigint as revenue from retail.orders
       where tenant_id = $1 and status in ('paid', 'fulfilled') and deleted_at is null group by 1, 2) raw
     full join (select * from retail.daily_store_totals where tenant_id = $1) d on d.store_id = raw.store_id and d.day = raw.local_date
     where raw.orders is distinct from d.orders or raw.revenue is distinct from d.revenue_minor`,
    [tenant],
  );
  expect(drift.rows[0].n).toBe(0);
  const more = JSON.parse((await cli("seed", "demo", "--tenant", "mall", "--stores", "8", "--orders", "2500", "--json")).stdout);
  expect(more.changed).toMatchObject({ stores: 0, orders: expect.any(Number), tenants: 0, users: 0 });
  expect((await db.owner.query("select count(*)::int as n from retail.orders where tenant_id = $1", [tenant])).rows[0].n).toBe(2000 + more.changed.orders);
  expect(more.changed.orders).toBeGreaterThan(0);
  expect(more.changed.orders).toBeLessThanOrEqual(500);
});

test("refused in production and for a bad slug, changing nothing", async () => {
  const before = await counts();
  env = { ...env, NODE_ENV: "production" };
  try {
    const r = await cli("seed", "demo", "--tenant", "prod-demo", "--json");
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stderr).error.message).toMatch(/production/);
  } finally {
    env = { ...env, NODE_ENV: "test" };
  }
  const bad = await cli("seed", "demo", "--tenant", "Not A Slug", "--json");
  expect(bad.code).toBe(1);
  expect(JSON.parse(bad.stderr).error.code).toBe("invalid_input");
  expect(await counts()).toEqual(before);
});
