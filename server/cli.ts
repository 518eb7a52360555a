/**
 * The operator CLI (DESIGN.md §10): `npx authhub <command>`. It works with the
 * same database as `npm start` (the embedded one in AUTHHUB_DATA_DIR, running or
 * not, or DATABASE_URL) and acts as the owner: it is the operator's trust root.
 * `--json` prints one JSON object on stdout; errors go to stderr with exit 1.
 */
import "./env.js";
import { parseArgs } from "node:util";
import pg from "pg";
import type { Identity, RoleLevel } from "../db/claims.js";
import { ensureAdmin, ensureTenant } from "../db/bootstrap.js";
import { prepareDatabase, type DatabaseHandle } from "../db/database.js";
import { checkIssuer, issuerInForce, rememberIssuer } from "./auth/issuer.js";
import { loadMasterKey } from "./auth/masterKey.js";
import { loadActiveSigningKey, mintAccessToken, newSigningKeyMaterial } from "./auth/signingKeys.js";
import { issueApiKey, rotateApiKeySecret } from "./openapi/issue.js";
import { DEMO_RETAIL, seedDemo } from "./seed/demo.js";
import { localBase, renderDemo, tryThis } from "./seed/tryThis.js";
import { createWebhookEndpoint } from "./webhooks/endpoints.js";
import { createEventEndpoint } from "./events/endpoints.js";
import { readConfig, type Config } from "./config.js";
import { toAppError } from "./errors.js";

const USAGE = `Usage: npx authhub <command> [options]

Commands:
  migrate                                   apply pending migrations
  bootstrap --tenant <slug> --admin-email <email> [--name <name>] [--super-admin]
                                            create a tenant and its first admin (idempotent)
  token --tenant <slug> --email <email> [--org <slug>] [--ttl <seconds>]
                                            mint a short-lived access token for that user
  audit verify [--tenant <slug>]            recompute the audit hash chain; exit 1 on tampering
  keys rotate [--retire-now]                make a new signing key; the old one stays published
                                            until every token it signed has expired (--retire-now:
                                            stop trusting it at once, for a compromised key)
  keys rewrap                               re-encrypt stored secrets under the current master key
  apikey create --tenant <slug> [--org <slug>] --scopes a,b [--rate N] [--name <name>] [--expires <ISO date>]
                                            issue an Open API key; prints its id and secret (shown once)
  apikey list --tenant <slug>               the tenant's keys (never their secrets)
  apikey rotate --key <ak_…> [--grace <seconds>]
                                            a new secret; the old one works for the grace period (default 0)
  apikey revoke --key <ak_…>                revoke a key (it stops working within a second)
  webhook create --tenant <slug> --issuer <url> [--secret whsec_…] [--name <name>] [--clerk-key sk_…]
                                            a Clerk webhook endpoint; prints its id, URL path and secret
  store create --tenant <slug> --code <code> --name <name> [--parent <org slug>] [--timezone <IANA>] [--currency <ISO 4217>]
                                            a store: an organization (below --parent, e.g. a seller) and its settings
  issuer show                               the issuer (iss) tokens carry, and where it comes from
  issuer set <url>                          change the remembered issuer (servers use it from their next start)
  events endpoint add --tenant <slug> --url <url> [--types a,b] [--store <code>] [--description <text>]
                                            an outbound event endpoint; prints its id and signing secret (shown once)
  events endpoint list --tenant <slug>      the tenant's event endpoints, enabled or why disabled, and pending deliveries
  seed demo [--tenant <slug>] [--stores N] [--orders M]
                                            a demo tenant (organizations, a user at every level, a custom
                                            role, an API key, a webhook endpoint) and what to try with it;
                                            idempotent (default tenant: demo; not in production)

Options:
  --json    print one JSON object on stdout
  --help    show this help
`;

class UsageError extends Error {}

/** The longest-lived token the CLI mints (`token --ttl`). */
const MAX_CLI_TOKEN_TTL = 86_400;

interface Output {
  json: boolean;
  /** What a person reads; the JSON object is printed instead with --json. */
  print(human: string, machine: Record<string, unknown>): void;
}

type Command = (ctx: { config: Config; db: DatabaseHandle; owner: pg.Pool; values: Record<string, unknown>; args: string[]; out: Output }) => Promise<void>;

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v.trim() === "") throw new UsageError(`--${name} is required`);
  return v.trim();
}

const commands: Record<string, Command> = {
  async migrate({ out }) {
    // prepareDatabase has applied the migrations already.
    out.print("Migrations are up to date.", { status: "ok" });
  },

  async bootstrap({ owner, values, out }) {
    const slug = required(values, "tenant");
    const email = required(values, "admin-email");
    const name = typeof values.name === "string" ? values.name : slug;
    const level = values["super-admin"] ? "SUPER_ADMIN" : "TENANT_ADMIN";
    const { t, u } = await asCliCommand(owner, "bootstrap", async (client) => {
      const t = await ensureTenant(client, slug, name);
      return { t, u: await ensureAdmin(client, t.id, email, level) };
    });
    out.print(
      `${t.created ? "Created" : "Found"} tenant ${t.slug} (${t.id}); ${u.email} is ${u.level} (${u.id}).\n` + `Next: npx authhub token --tenant ${t.slug} --email ${u.email}`,
      { tenant: { id: t.id, slug: t.slug, created: t.created }, user: { id: u.id, email: u.email, level: u.level } },
    );
  },

  async token({ config, owner, values, out }) {
    const slug = required(values, "tenant");
    const email = required(values, "email");
    const orgSlug = typeof values.org === "string" ? values.org : null;
    const ttl = values.ttl === undefined ? config.accessTokenTtlSeconds : Number(values.ttl);
    if (!Number.isInteger(ttl) || ttl < 60 || ttl > MAX_CLI_TOKEN_TTL) throw new UsageError(`--ttl must be a whole number of seconds between 60 and ${MAX_CLI_TOKEN_TTL}`);
    // The level a token carries is decided in SQL, as for token exchange and refresh.
    const { rows } = await owner.query<{ tenant_id: string; user_id: string; org_id: string | null; level: RoleLevel | null }>(
      `select u.tenant_id, u.id as user_id, o.id as org_id,
              authhub_private.token_level(u.tenant_id, u.id, o.id) as level
       from authhub.tenants t
       join authhub.users u on u.tenant_id = t.id and u.email = lower($2)
       left join authhub.organizations o on o.tenant_id = t.id and o.slug = $3
       where t.slug = $1`,
      [slug, email, orgSlug],
    );
    const row = rows[0];
    const level = row?.level ?? null;
    if (!row || level === null || (orgSlug !== null && row.org_id === null)) {
      throw new UsageError(
        orgSlug !== null ? `${email} is not an active member of organization ${orgSlug} in an active tenant ${slug}.` : `No active user ${email} in an active tenant ${slug}.`,
      );
    }
    const masterKey = masterKeyFor(config);
    const key = await loadActiveSigningKey(owner, masterKey);
    const identity: Identity = { userId: row.user_id, tenantId: row.tenant_id, orgId: row.org_id, level };
    // The issuer the server uses: AUTHHUB_ISSUER, or the one the database remembers.
    const { issuer, source } = await issuerInForce(owner, config);
    if (source === "default") {
      process.stderr.write(
        `warning: no server has started on this database yet; this token names the default issuer ${issuer}, which the first start keeps only if it listens there.\n`,
      );
    }
    const { token, expiresAt } = await mintAccessToken(key, identity, { issuer, ttlSeconds: ttl });
    out.print(token, { token, expires_at: expiresAt.toISOString(), roles: [level], tenant_id: row.tenant_id, user_id: row.user_id, org_id: row.org_id });
  },
};

const masterKeyFor = (config: Config) => loadMasterKey(config.masterKey, config.dataDir, config.env, (m) => process.stderr.write(`warning: ${m}\n`), config.masterKeyPrevious);

/** Runs `fn` in one transaction whose audit events name the CLI command. */
async function asCliCommand<T>(owner: pg.Pool, command: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await owner.connect();
  try {
    await client.query("begin");
    await client.query("select set_config('authhub.actor', $1, true)", [`system:cli:${command}`]);
    const result = await fn(client);
    await client.query("commit");
    return result;
  } catch (err) {
    await client.query("rollback").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * `keys rotate`: a new active signing key. The retired one stays published for
 * the longest a token can live (AUTHHUB_ACCESS_TOKEN_TTL, or a day for tokens
 * minted with `token --ttl`), plus a minute of clock skew.
 */
async function keysRotate({ config, owner, values, out }: Parameters<Command>[0]): Promise<number> {
  const material = await newSigningKeyMaterial(masterKeyFor(config));
  const publishFor = values["retire-now"] ? 0 : Math.max(config.accessTokenTtlSeconds, MAX_CLI_TOKEN_TTL) + 60;
  const retired = await asCliCommand(
    owner,
    "keys-rotate",
    async (client) =>
      (
        await client.query<{ retired_kid: string; publish_until: Date }>(
          "select retired_kid, publish_until from authhub_private.rotate_signing_key($1, $2, $3, make_interval(secs => $4))",
          [material.kid, JSON.stringify(material.publicJwk), material.privateKeyEncrypted, publishFor],
        )
      ).rows[0],
  );
  out.print(
    retired
      ? `New signing key ${material.kid} is active. ${retired.retired_kid} is retired and published until ${retired.publish_until.toISOString()}.`
      : `New signing key ${material.kid} is active.`,
    { kid: material.kid, retired: retired ? { kid: retired.retired_kid, published_until: retired.publish_until.toISOString() } : null },
  );
  return 0;
}

/** Where secrets encrypted under the master key live (identifiers fixed here, never from input). */
const ENCRYPTED_COLUMNS = [
  { table: "authhub_private.signing_keys", key: "kid", column: "private_key_encrypted" },
  { table: "authhub_private.api_key_secrets", key: "fingerprint", column: "secret_encrypted" },
  { table: "authhub_private.webhook_secrets", key: "endpoint_id::text", column: "secret_encrypted" },
  { table: "authhub_private.webhook_secrets", key: "endpoint_id::text", column: "clerk_secret_key_encrypted" },
  { table: "authhub_private.event_endpoint_secrets", key: "endpoint_id::text", column: "secret_encrypted" },
];

/** `keys rewrap`: every stored secret not encrypted under the current master key is re-encrypted under it. */
async function keysRewrap({ config, owner, out }: Parameters<Command>[0]): Promise<number> {
  const masterKey = masterKeyFor(config);
  const rewrapped = await asCliCommand(owner, "keys-rewrap", async (client) => {
    let n = 0;
    // Every column that holds a master-key ciphertext, with its row's key.
    for (const { table, key, column } of ENCRYPTED_COLUMNS) {
      const { rows } = await client.query<{ k: string; c: string | null }>(`select ${key} as k, ${column} as c from ${table} for update`);
      for (const row of rows) {
        if (row.c === null || masterKey.versionOf(row.c) === masterKey.version) continue;
        await client.query(`update ${table} set ${column} = $2 where ${key} = $1`, [row.k, masterKey.encrypt(masterKey.decrypt(row.c))]);
        n++;
      }
    }
    return n;
  });
  out.print(`Re-encrypted ${rewrapped} secret(s) under master key v${masterKey.version}.`, { rewrapped, version: masterKey.version });
  return 0;
}

async function tenantBySlug(owner: pg.Pool, slug: string): Promise<string> {
  const { rows } = await owner.query<{ id: string }>("select id from authhub.tenants where slug = $1", [slug]);
  if (!rows[0]) throw new UsageError(`No tenant ${slug}.`);
  return rows[0].id;
}

async function apiKeyByPublicId(owner: pg.Pool, values: Record<string, unknown>): Promise<{ id: string; key_id: string }> {
  const keyId = required(values, "key");
  const { rows } = await owner.query<{ id: string; key_id: string }>("select id, key_id from authhub.api_keys where key_id = $1", [keyId]);
  if (!rows[0]) throw new UsageError(`No API key ${keyId}.`);
  return rows[0];
}

/** `apikey create`: the operator issues a key in any tenant (the same validation as GraphQL's createApiKey). */
async function apikeyCreate({ config, owner, values, out }: Parameters<Command>[0]): Promise<number> {
  const tenantId = await tenantBySlug(owner, required(values, "tenant"));
  const scopes = required(values, "scopes")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  let organizationId: string | null = null;
  if (typeof values.org === "string") {
    const { rows } = await owner.query<{ id: string }>("select id from authhub.organizations where tenant_id = $1 and slug = $2", [tenantId, values.org]);
    if (!rows[0]) throw new UsageError(`No organization ${values.org} in that tenant.`);
    organizationId = rows[0].id;
  }
  const rate = values.rate === undefined ? null : Number(values.rate);
  if (rate !== null && !(Number.isInteger(rate) && rate >= 1 && rate <= 1_000_000)) throw new UsageError("--rate must be a whole number of requests per minute (1-1000000)");
  const expiresAt = typeof values.expires === "string" ? new Date(values.expires) : null;
  if (expiresAt && Number.isNaN(expiresAt.getTime())) throw new UsageError("--expires must be a date, e.g. 2027-01-01T00:00:00Z");
  const name = typeof values.name === "string" ? values.name : "API key";
  const issued = await asCliCommand(owner, "apikey-create", (client) =>
    issueApiKey(client, masterKeyFor(config), { name, scopes, organizationId, rateLimitPerMinute: rate, expiresAt, tenantId }),
  );
  out.print(
    [
      `API key ${issued.keyId} (id ${issued.id}), scopes ${issued.scopes.join(", ")}, ${issued.rateLimitPerMinute}/min.`,
      `Secret (shown once, store it now): ${issued.secret}`,
    ].join("\n"),
    {
      id: issued.id,
      key_id: issued.keyId,
      secret: issued.secret,
      tenant_id: issued.tenantId,
      organization_id: issued.organizationId,
      scopes: issued.scopes,
      rate_limit_per_minute: issued.rateLimitPerMinute,
      expires_at: issued.expiresAt?.toISOString() ?? null,
    },
  );
  return 0;
}

async function apikeyList({ owner, values, out }: Parameters<Command>[0]): Promise<number> {
  const tenantId = await tenantBySlug(owner, required(values, "tenant"));
  // The use columns answer only within the tenant the claims name (as a tenant admin's request would).
  const { rows } = await asCliCommand(owner, "apikey-list", async (client) => {
    await client.query("select set_config('jwt.claims.tenant_id', $1, true)", [tenantId]);
    return client.query<{ key_id: string; name: string; scopes: string[]; revoked_at: Date | null; request_count: number } & Record<string, unknown>>(
      `select k.key_id, k.id, k.name, k.scopes::text[] as scopes, k.organization_id, k.rate_limit_per_minute, k.expires_at, k.revoked_at, k.created_at,
            authhub.api_keys_last_used_at(k) as last_used_at, authhub.api_keys_request_count(k) as request_count
     from authhub.api_keys k where k.tenant_id = $1 order by k.created_at`,
      [tenantId],
    );
  });
  out.print(
    rows.length
      ? rows.map((r) => `${r.key_id}  ${r.revoked_at ? "revoked" : "active "}  ${r.name}  [${r.scopes.join(", ")}]  ${r.request_count} requests`).join("\n")
      : "No API keys.",
    { keys: rows },
  );
  return 0;
}

async function apikeyRotate({ config, owner, values, out }: Parameters<Command>[0]): Promise<number> {
  const key = await apiKeyByPublicId(owner, values);
  const grace = values.grace === undefined ? 0 : Number(values.grace);
  if (!(Number.isInteger(grace) && grace >= 0 && grace <= 604_800)) throw new UsageError("--grace must be a whole number of seconds (0-604800)");
  const rotated = await asCliCommand(owner, "apikey-rotate", (client) => rotateApiKeySecret(client, masterKeyFor(config), key.id, grace));
  out.print(`New secret for ${rotated.keyId} (shown once): ${rotated.secret}`, { key_id: rotated.keyId, secret: rotated.secret, grace_seconds: grace });
  return 0;
}

async function apikeyRevoke({ owner, values, out }: Parameters<Command>[0]): Promise<number> {
  const key = await apiKeyByPublicId(owner, values);
  await asCliCommand(owner, "apikey-revoke", (client) => client.query("select authhub.revoke_api_key($1)", [key.id]));
  out.print(`Revoked ${key.key_id}.`, { key_id: key.key_id, revoked: true });
  return 0;
}

/** `webhook create`: a Clerk endpoint for a tenant; the secret (given or new) is printed once. */
async function webhookCreate({ config, owner, values, out }: Parameters<Command>[0]): Promise<number> {
  const tenantId = await tenantBySlug(owner, required(values, "tenant"));
  const created = await asCliCommand(owner, "webhook-create", (client) =>
    createWebhookEndpoint(client, masterKeyFor(config), {
      name: typeof values.name === "string" ? values.name : "Clerk",
      issuer: required(values, "issuer"),
      secret: typeof values.secret === "string" ? values.secret : null,
      clerkSecretKey: typeof values["clerk-key"] === "string" ? values["clerk-key"] : null,
      tenantId,
    }),
  );
  out.print([`Webhook endpoint ${created.id}`, `URL path: ${created.path}`, `Signing secret (shown once): ${created.secret}`].join("\n"), {
    id: created.id,
    path: created.path,
    secret: created.secret,
    tenant_id: created.tenantId,
  });
  return 0;
}

/**
 * `seed demo`: the demo tenant, in one transaction (what a rerun finds is left as
 * it is; see server/seed/demo.ts), then what to try with it. Secrets appear only
 * in the run that made them.
 */
async function seedDemoCommand({ config, owner, values, out }: Parameters<Command>[0]): Promise<number> {
  // Demo users with known e-mails and a super admin have no place in a production database.
  if (config.env === "production") throw new UsageError("seed demo is for development and test databases (NODE_ENV is production).");
  const slug = typeof values.tenant === "string" ? values.tenant.trim() : "demo";
  const size = (name: string, fallback: number, max: number) => {
    if (values[name] === undefined) return fallback;
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 0 || n > max) throw new UsageError(`--${name} must be a whole number from 0 to ${max}`);
    return n;
  };
  const retail = { stores: size("stores", DEMO_RETAIL.stores, 10_000), orders: size("orders", DEMO_RETAIL.orders, 10_000_000) };
  const seed = await asCliCommand(owner, "seed-demo", (client) => seedDemo(client, masterKeyFor(config), { tenant: slug, retail }));
  const t = tryThis(seed, localBase(config));
  const { identity, apiKey, webhookEndpoint: hook } = seed;
  out.print(renderDemo(seed, t), {
    tenant: identity.tenant,
    organizations: identity.organizations.map((o) => ({ id: o.id, slug: o.slug, parent: o.parent, store: o.store })),
    users: identity.users.map((u) => ({ id: u.id, email: u.email, level: u.level, status: u.status, memberships: u.memberships })),
    roles: identity.roles,
    api_key: { id: apiKey.id, key_id: apiKey.keyId, scopes: apiKey.scopes, created: apiKey.created, ...(apiKey.secret ? { secret: apiKey.secret } : {}) },
    webhook_endpoint: { id: hook.id, path: hook.path, issuer: hook.issuer, created: hook.created, ...(hook.secret ? { secret: hook.secret } : {}) },
    changed: seed.changed,
    try: t,
  });
  return 0;
}

/** `audit verify`: the first broken link, or how many seals hold. */
async function auditVerify({ owner, values, out }: Parameters<Command>[0]): Promise<number> {
  const tenantId = typeof values.tenant === "string" ? await tenantBySlug(owner, values.tenant) : null;
  const { rows } = await owner.query<{ tenant_id: string; seq: string; ok: boolean; problem: string | null }>(
    "select tenant_id, seq, ok, problem from authhub_private.verify_audit_chain($1)",
    [tenantId],
  );
  const broken = rows.find((r) => !r.ok);
  if (broken) {
    out.print(`Tampering detected: tenant ${broken.tenant_id}, seal ${broken.seq}: ${broken.problem}.`, {
      ok: false,
      seals: rows.length,
      first_broken: { tenant_id: broken.tenant_id, seal: Number(broken.seq), problem: broken.problem },
    });
    return 1;
  }
  out.print(`The audit chain holds (${rows.length} seal(s) verified).`, { ok: true, seals: rows.length });
  return 0;
}

/**
 * `store create`: the operator makes a store through the same SQL as GraphQL's
 * createStore (retail.create_store), in the tenant the command names (its
 * claims setting, as a caller's would be).
 */
async function storeCreate({ owner, values, out }: Parameters<Command>[0]): Promise<number> {
  const tenantId = await tenantBySlug(owner, required(values, "tenant"));
  let parentId: string | null = null;
  if (typeof values.parent === "string") {
    const { rows } = await owner.query<{ id: string }>("select id from authhub.organizations where tenant_id = $1 and slug = $2", [tenantId, values.parent]);
    if (!rows[0]) throw new UsageError(`No organization ${values.parent} in that tenant.`);
    parentId = rows[0].id;
  }
  const store = await asCliCommand(owner, "store-create", async (client) => {
    await client.query("select set_config('jwt.claims.tenant_id', $1, true)", [tenantId]);
    const { rows } = await client.query<{ id: string; code: string; name: string; timezone: string; currency: string }>(
      "select id, code, name, timezone, currency from retail.create_store($1, $2, $3, $4, $5)",
      [required(values, "code"), required(values, "name"), values.timezone ?? "UTC", values.currency ?? "USD", parentId],
    );
    return rows[0]!;
  });
  out.print(`Store ${store.code} (id ${store.id}): ${store.name}, ${store.timezone}, ${store.currency}.`, { ...store, tenant_id: tenantId, parent_id: parentId });
  return 0;
}

/** `issuer show`: the issuer the CLI mints for, and where it comes from. */
async function issuerShow({ config, owner, out }: Parameters<Command>[0]): Promise<number> {
  const { issuer, source } = await issuerInForce(owner, config);
  const where = {
    environment: "from AUTHHUB_ISSUER",
    database: "remembered in the database",
    default: "the default: no server has started on this database yet, and the first to start remembers its own",
  }[source];
  out.print(`${issuer} (${where})`, { issuer, source });
  return 0;
}

/** `issuer set <url>`: the remembered issuer changes; servers take it at their next start. */
async function issuerSet({ config, owner, args, out }: Parameters<Command>[0]): Promise<number> {
  let issuer: string;
  try {
    issuer = checkIssuer(args[0] ?? "");
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  await rememberIssuer(owner, issuer);
  const notes = [
    "Restart the servers: they read the issuer at start. Tokens minted for the old issuer are refused from then on.",
    ...(config.issuerFromEnvironment ? [`AUTHHUB_ISSUER (${config.issuer}) is set here, and wins wherever it is set.`] : []),
  ];
  out.print([`The issuer is now ${issuer}.`, ...notes].join("\n"), { issuer, source: "database" });
  return 0;
}

// --- Outbound events (issue 17) ---

/** `events endpoint add`: an event endpoint for a tenant (optionally a store's); the secret is printed once. */
async function eventsEndpointAdd({ config, owner, values, out }: Parameters<Command>[0]): Promise<number> {
  const tenantId = await tenantBySlug(owner, required(values, "tenant"));
  let storeId: string | null = null;
  if (typeof values.store === "string") {
    const { rows } = await owner.query<{ id: string }>("select id from retail.stores where tenant_id = $1 and code = $2", [tenantId, values.store]);
    if (!rows[0]) throw new UsageError(`No store ${values.store} in that tenant.`);
    storeId = rows[0].id;
  }
  const eventTypes =
    typeof values.types === "string"
      ? values.types
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : null;
  const created = await asCliCommand(owner, "events-endpoint-add", (client) =>
    createEventEndpoint(
      client,
      masterKeyFor(config),
      { url: required(values, "url"), eventTypes, storeId, description: typeof values.description === "string" ? values.description : null, tenantId },
      { production: config.env === "production" },
    ),
  );
  out.print([`Event endpoint ${created.id} → ${created.url} (${created.eventTypes.join(", ")})`, `Signing secret (shown once): ${created.secret}`].join("\n"), {
    id: created.id,
    secret: created.secret,
    tenant_id: created.tenantId,
    url: created.url,
    event_types: created.eventTypes,
    store_id: storeId,
  });
  return 0;
}

async function eventsEndpointList({ owner, values, out }: Parameters<Command>[0]): Promise<number> {
  const tenantId = await tenantBySlug(owner, required(values, "tenant"));
  const { rows } = await owner.query<
    { id: string; url: string; event_types: string[]; enabled: boolean; disabled_reason: string | null; pending: number } & Record<string, unknown>
  >(
    `select e.id, e.url, e.event_types, e.store_id, e.enabled, e.disabled_reason, e.failing_since, e.last_success_at, e.created_at,
            (select count(*)::int from authhub.event_deliveries d where d.tenant_id = e.tenant_id and d.endpoint_id = e.id and d.state = 'pending') as pending
     from authhub.event_endpoints e where e.tenant_id = $1 order by e.created_at`,
    [tenantId],
  );
  out.print(
    rows.length
      ? rows
          .map(
            (r) =>
              `${r.id}  ${r.enabled ? "enabled " : "disabled"}  ${r.url}  [${r.event_types.join(", ")}]  ${r.pending} pending${r.disabled_reason ? `\n    ${r.disabled_reason}` : ""}`,
          )
          .join("\n")
      : "No event endpoints.",
    { endpoints: rows },
  );
  return 0;
}

/** Three-word commands (`events endpoint add`). */
const THREE_WORD_COMMANDS: Record<string, (ctx: Parameters<Command>[0]) => Promise<number>> = {
  "events endpoint add": eventsEndpointAdd,
  "events endpoint list": eventsEndpointList,
};

const TWO_WORD_COMMANDS: Record<string, (ctx: Parameters<Command>[0]) => Promise<number>> = {
  "audit verify": auditVerify,
  "keys rotate": keysRotate,
  "keys rewrap": keysRewrap,
  "apikey create": apikeyCreate,
  "apikey list": apikeyList,
  "apikey rotate": apikeyRotate,
  "apikey revoke": apikeyRevoke,
  "webhook create": webhookCreate,
  "store create": storeCreate,
  "seed demo": seedDemoCommand,
  "issuer show": issuerShow,
  "issuer set": issuerSet,
};

/** Two-word commands that take one positional argument after their name. */
const WITH_ARGUMENT = new Set(["issuer set"]);

export async function runCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let json = argv.includes("--json");
  const write = (s: string) => process.stdout.write(s.endsWith("\n") ? s : s + "\n");
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        tenant: { type: "string" },
        "admin-email": { type: "string" },
        name: { type: "string" },
        "super-admin": { type: "boolean" },
        email: { type: "string" },
        org: { type: "string" },
        ttl: { type: "string" },
        "retire-now": { type: "boolean" },
        scopes: { type: "string" },
        rate: { type: "string" },
        expires: { type: "string" },
        key: { type: "string" },
        grace: { type: "string" },
        secret: { type: "string" },
        issuer: { type: "string" },
        "clerk-key": { type: "string" },
        code: { type: "string" },
        parent: { type: "string" },
        timezone: { type: "string" },
        currency: { type: "string" },
        stores: { type: "string" },
        orders: { type: "string" },
        url: { type: "string" },
        types: { type: "string" },
        store: { type: "string" },
        description: { type: "string" },
      },
    });
    json = values.json === true;
    const name = positionals[0];
    if (values.help || !name) {
      write(USAGE);
      return values.help ? 0 : 2;
    }
    const pair = positionals.slice(0, 2).join(" ");
    if (WITH_ARGUMENT.has(pair) && positionals.length !== 3) throw new UsageError(`${pair} takes one argument: npx authhub ${pair} <url>`);
    const twoWord =
      positionals.length === (WITH_ARGUMENT.has(pair) ? 3 : 2) ? TWO_WORD_COMMANDS[pair] : positionals.length === 3 ? THREE_WORD_COMMANDS[positionals.join(" ")] : undefined;
    const command = positionals.length === 1 ? commands[name] : undefined;
    if (!twoWord && !command) throw new UsageError(`Unknown command: ${positionals.join(" ")}`);
    const config = readConfig(env);
    const db = await prepareDatabase(config, {
      whenRunning: "share",
      migrate: true,
      log: (level, msg) => {
        if (level === "error" || level === "warning") process.stderr.write(msg + "\n");
      },
    });
    const owner = new pg.Pool({ connectionString: db.ownerUrl, max: 2 });
    // A connection closed under us (server restart, administrator) surfaces as a query error, not a crash.
    owner.on("error", () => undefined);
    const ctx = {
      config,
      db,
      owner,
      values,
      args: positionals.slice(2),
      out: { json, print: (human: string, machine: Record<string, unknown>) => write(json ? JSON.stringify(machine) : human) },
    };
    try {
      if (twoWord) return await twoWord(ctx);
      await command!(ctx);
    } finally {
      await owner.end();
      await db.stop();
    }
    return 0;
  } catch (err) {
    const usage = err instanceof UsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS") === true;
    // Operators see the cause of an internal failure; known errors keep their public wording.
    const known = toAppError(err);
    const code = usage ? "invalid_input" : known.code;
    const message = usage || known.code === "internal" ? (err as Error).message : known.message;
    if (json) process.stderr.write(JSON.stringify({ error: { code, message } }) + "\n");
    else process.stderr.write(`authhub: ${message}\n${usage ? "\n" + USAGE : ""}`);
    return usage ? 2 : 1;
  }
}
