/**
 * What `seed demo` prints: a short "try this" list built from what was seeded,
 * as commands to paste (one token command per level, GraphQL with a token, a
 * signed Open API call). The same strings go into `--json` (`try`), so what a
 * person copies is what the tests run.
 */
import { signRequest } from "../../client/index.js";
import type { DemoSeed } from "./demo.js";

export interface TryThis {
  /** Where the commands send requests (the server `npm start` runs with the same settings). */
  base: string;
  tokens: { email: string; level: string; shows: string; command: string }[];
  /** Mints the admin's token into $TOKEN, then asks GraphQL who it is and whom it sees. */
  graphql: string;
  openApi: {
    /** A curl signed now: one call within 5 minutes (a nonce is accepted once). Only when the secret is known. */
    curl: string | null;
    /** Signs each call afresh with the shipped client; reads KEY_ID and SECRET from the environment. Run from the project directory. */
    node: string;
    /** Sets KEY_ID (and SECRET, when this run issued the key). */
    env: string;
  };
}

const GRAPHQL_QUERY = "{ currentUser { email level } users { totalCount nodes { email level } } }";
const OPEN_API_PATH = "/open/v1/users?limit=5";

/** The base URL of a server started with `config`'s HOST and PORT (any-address binds are reached on loopback). */
export function localBase(config: { host: string; port: number }): string {
  const host = config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host.includes(":") ? `[${config.host}]` : config.host;
  return `http://${host}:${config.port}`;
}

export function tryThis(seed: DemoSeed, base: string, now: Date = new Date()): TryThis {
  const slug = seed.identity.tenant.slug;
  const token = (email: string) => `npx authhub token --tenant ${slug} --email ${email}`;
  const admin = seed.identity.users.find((u) => u.level === "TENANT_ADMIN") ?? seed.identity.users[0]!;
  const url = `${base}${OPEN_API_PATH}`;
  const { keyId, secret } = seed.apiKey;
  const signed = secret === null ? null : signRequest({ keyId, secret, method: "GET", url, timestamp: Math.floor(now.getTime() / 1000) });
  return {
    base,
    tokens: seed.identity.users.map((u) => ({ email: u.email, level: u.level, shows: u.shows, command: token(u.email) })),
    graphql: [
      `TOKEN=$(${token(admin.email)})`,
      `curl -s ${base}/graphql -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '${JSON.stringify({ query: GRAPHQL_QUERY })}'`,
    ].join("\n"),
    openApi: {
      curl:
        signed &&
        `curl -s '${url}' ${Object.entries(signed)
          .map(([name, value]) => `-H '${name}: ${value}'`)
          .join(" ")}`,
      node:
        `node --input-type=module -e 'import { signRequest } from "authhub/client"; const url = "${url}"; ` +
        `const res = await fetch(url, { headers: signRequest({ keyId: process.env.KEY_ID, secret: process.env.SECRET, method: "GET", url }) }); ` +
        `console.log(res.status, await res.text());'`,
      env: secret === null ? `export KEY_ID=${keyId}` : `export KEY_ID=${keyId} SECRET=${secret}`,
    },
  };
}

/** The human form: what was seeded, then the list. */
export function renderDemo(seed: DemoSeed, t: TryThis): string {
  const { identity, apiKey, webhookEndpoint: hook } = seed;
  const made = Object.entries(seed.changed).filter(([, n]) => n > 0);
  const orgs = identity.organizations.map((o) => (o.parent ? `${o.slug} (in ${o.parent})` : o.slug)).join(", ");
  const width = Math.max(...t.tokens.map((x) => x.command.length));
  const lines = [
    `Demo tenant ${identity.tenant.slug} (${identity.tenant.id}): ${made.length ? `created ${made.map(([table, n]) => `${table} ${n}`).join(", ")}` : "already seeded, nothing changed"}.`,
    `Organizations: ${orgs}. Custom role: ${identity.roles.map((r) => `${r.key} [${r.permissions.join(", ")}]`).join(", ")}.`,
    "",
    `Try this, with \`npm start\` running (${t.base}):`,
    "",
    "  # A 15-minute token for each level",
    ...t.tokens.map((x) => `  ${x.command.padEnd(width)}  # ${x.shows}`),
    "",
    "  # GraphQL as the tenant admin (swap in support@…: it sees seller-one's people only)",
    ...t.graphql.split("\n").map((l) => `  ${l}`),
    "",
    `  # The Open API with the demo key ${apiKey.keyId} [${apiKey.scopes.join(", ")}]`,
    ...(apiKey.secret
      ? [`  # Its secret is shown this once: ${apiKey.secret}`, "  # Signed now, good for one call within 5 minutes:", `  ${t.openApi.curl}`]
      : [`  # Its secret was shown when it was made (lost it? npx authhub apikey rotate --key ${apiKey.keyId})`]),
    "  # Signed afresh on every call, with the shipped client (from this directory):",
    `  ${t.openApi.env}${apiKey.secret ? "" : "  # and SECRET=<its sk_…>"}`,
    `  ${t.openApi.node}`,
    "",
    `  # Clerk webhook endpoint ${hook.id} (issuer ${hook.issuer}, a placeholder): POST ${t.base}${hook.path}`,
    hook.secret ? `  # Its signing secret is shown this once: ${hook.secret}` : "  # Its signing secret was shown when it was made.",
  ];
  return lines.join("\n");
}
