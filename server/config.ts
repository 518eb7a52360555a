/**
 * Every environment variable AuthHub reads, read and validated once. An unknown
 * AUTHHUB_* name or an invalid value fails fast with a message naming the variable.
 * README.md documents each one with its default.
 */
import { isIP } from "node:net";
import path from "node:path";
import proxyAddr from "proxy-addr";
import { ConfigError } from "../db/configError.js";
import { checkIssuer } from "./auth/issuer.js";

export type Env = "development" | "test" | "production";

export interface TrustedIssuer {
  issuer: string;
  jwksUri: string;
  audience?: string;
  /**
   * `azp` values (the origins a provider issued the token to) that stand in for
   * the audience: a token is meant for AuthHub when its `aud` names the audience
   * or its `azp` is one of these (Clerk's default session tokens carry no `aud`).
   */
  authorizedParties?: string[];
  /** How long after its `iat` the issuer's token is accepted (exchanged, or used as a bearer token), whatever its `exp`. */
  maxTokenAgeSeconds: number;
}

/** A trusted issuer's token is accepted at most this long after it was issued, unless the issuer says otherwise. */
export const DEFAULT_TRUSTED_TOKEN_MAX_AGE_SECONDS = 3600;

/**
 * AUTHHUB_* variables that are not settings but belong to tools around AuthHub
 * (the test suite's cluster, for one); every other unknown AUTHHUB_* name is
 * refused, so a misspelt setting cannot silently leave its default in force.
 */
export const FOREIGN_PREFIXES = ["AUTHHUB_TEST_"];

export interface Config {
  env: Env;
  port: number;
  host: string;
  dataDir: string;
  /** Owner connection (migrations, CLI, worker). Null: use the embedded cluster. */
  databaseUrl: string | null;
  /** The server's login role (authhub_authenticator). Null: derived from databaseUrl. */
  authDatabaseUrl: string | null;
  /** Superuser or CREATEROLE connection used to create roles and the database. */
  rootDatabaseUrl: string | null;
  masterKey: string | null;
  /** Older master keys (comma-separated), for decryption while secrets are re-wrapped. */
  masterKeyPrevious: string | null;
  /**
   * `iss` of AuthHub's tokens. Unless AUTHHUB_ISSUER sets it, this is only the
   * default (`http://HOST:PORT`): the server and the CLI use the issuer the
   * database remembers (server/auth/issuer.ts), so a token minted anywhere works.
   */
  issuer: string;
  /** Whether AUTHHUB_ISSUER set the issuer (it then wins over the remembered one). */
  issuerFromEnvironment: boolean;
  trustedIssuers: TrustedIssuer[];
  gatewaySecret: string | null;
  accessTokenTtlSeconds: number;
  /** Each refresh token's life (rotation starts a new one), and a login's absolute life. */
  refreshTokenTtlSeconds: number;
  sessionMaxAgeSeconds: number;
  /** Express's `trust proxy`: false, a hop count, or addresses/subnets of trusted proxies. */
  trustProxy: false | number | string[];
  /** Largest webhook body accepted (413 above, before parsing). */
  webhookMaxBytes: number;
  /** Largest NDJSON body of a bulk sync load (AUTHHUB_SYNC_BULK_MAX_BYTES). */
  syncBulkMaxBytes: number;
  /** Clerk's Backend API, for reconciliation (the operator's setting, never a tenant's). */
  clerkApiUrl: string;
  /** POST /auth/token abuse limits, per minute. */
  tokenRateLimit: { perIp: number; perSubject: number };
  graphql: {
    maxDepth: number;
    maxPageSize: number;
    defaultPageSize: number;
    maxRequestBytes: number;
    /** Per operation: aliases, root fields, mutation fields (server/graphql/operations.ts). */
    maxAliases: number;
    maxRootFields: number;
    maxMutations: number;
    /** The estimated cost an admin's operation may reach; org admins half, users and keys a fifth, anonymous callers a fiftieth. */
    maxCost: number;
    /** Who may introspect the schema: everyone, signed-in callers, or nobody. */
    introspection: "on" | "authenticated" | "off";
    /** "Did you mean …?" in validation errors (they tell the schema as introspection does). */
    suggestions: boolean;
    /** Requests per minute: per user or API key, per tenant, per address for anonymous callers. */
    rateLimitPerUser: number;
    rateLimitPerTenant: number;
    rateLimitAnonymous: number;
  };
  logLevel: "debug" | "info" | "warn" | "error" | "silent";
  runWorker: boolean;
  /** Connections and the bounds on every request's use of one. */
  database: DatabaseLimits;
  /** How long a graceful shutdown lets in-flight requests run before cancelling them (ms). */
  shutdownGraceMs: number;
  /** The public catalogue: requests per minute per client address, and how long answers may be cached (s). */
  catalog: { rateLimitPerAddress: number; maxAgeSeconds: number };
  /** GET /metrics: on the public port behind a bearer token, and/or on a loopback port of its own; neither: not served. */
  metrics: { token: string | null; port: number | null };
}

/** The bounds every request transaction runs under (db/claims.ts applies them with its settings). */
export function transactionLimits(config: Pick<Config, "database">): { statementTimeoutMs: number; idleInTransactionTimeoutMs: number } {
  return { statementTimeoutMs: config.database.statementTimeoutMs, idleInTransactionTimeoutMs: config.database.idleInTransactionTimeoutMs };
}

export interface DatabaseLimits {
  /** The server's authenticator pool size. */
  poolSize: number;
  /** Longest wait for a pooled connection before a request answers 503 (ms). */
  acquireTimeoutMs: number;
  /** Longest statement of a request (ms). */
  statementTimeoutMs: number;
  /** Longest a request's transaction may sit idle before the server ends it (ms). */
  idleInTransactionTimeoutMs: number;
  /** `transaction`: a transaction-mode pooler (PgBouncer…) is between the server and PostgreSQL: no named prepared statements. */
  pooler: "none" | "transaction";
}

type Source = Record<string, string | undefined>;

function str(env: Source, name: string): string | null {
  const v = env[name];
  return v === undefined || v.trim() === "" ? null : v.trim();
}

function int(env: Source, name: string, fallback: number, min: number, max: number): number {
  const raw = str(env, name);
  if (raw === null) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function oneOf<T extends string>(env: Source, name: string, allowed: readonly T[], fallback: T): T {
  const raw = str(env, name);
  if (raw === null) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `must be one of ${allowed.join(", ")}, got "${raw}"`);
  }
  return raw as T;
}

function postgresUrl(env: Source, name: string): string | null {
  const raw = str(env, name);
  if (raw === null) return null;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, "is not a URL (expected postgres://user:password@host:port/database)");
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new ConfigError(name, "must start with postgres:// or postgresql://");
  }
  return raw;
}

function httpUrl(env: Source, name: string, fallback: string): string {
  const raw = str(env, name) ?? fallback;
  try {
    const u = new URL(raw);
    if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error();
  } catch {
    throw new ConfigError(name, "must be an http(s) URL");
  }
  return raw.replace(/\/+$/, "");
}

function trustProxy(env: Source): false | number | string[] {
  const raw = str(env, "AUTHHUB_TRUST_PROXY");
  if (raw === null || raw === "false") return false;
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw);
    // More hops than the real chain would let the client's own X-Forwarded-For entry through.
    if (hops < 1 || hops > 5) throw new ConfigError("AUTHHUB_TRUST_PROXY", `as a hop count must be between 1 and 5 (the proxies really in front), got ${raw}`);
    return hops;
  }
  const list = raw.split(",").map((s) => s.trim());
  for (const item of list) {
    const [address, bits] = item.split("/");
    const valid =
      ["loopback", "linklocal", "uniquelocal"].includes(item) ||
      (isIP(address ?? "") === 4 && (bits === undefined || (/^\d+$/.test(bits) && Number(bits) >= 8 && Number(bits) <= 32))) ||
      (isIP(address ?? "") === 6 && (bits === undefined || (/^\d+$/.test(bits) && Number(bits) >= 16 && Number(bits) <= 128)));
    if (!valid) {
      throw new ConfigError(
        "AUTHHUB_TRUST_PROXY",
        `must be a hop count or proxy addresses/subnets (at least /8, or /16 for IPv6; or loopback, linklocal, uniquelocal), got "${item}"`,
      );
    }
  }
  // What Express will do with it, checked now rather than at the first request.
  try {
    proxyAddr.compile(list);
  } catch {
    throw new ConfigError("AUTHHUB_TRUST_PROXY", `is not a valid list of proxies: "${raw}"`);
  }
  return list;
}

function trustedIssuers(env: Source): TrustedIssuer[] {
  const raw = str(env, "AUTHHUB_TRUSTED_ISSUERS");
  if (raw === null) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new ConfigError("AUTHHUB_TRUSTED_ISSUERS", "is not valid JSON");
  }
  if (!Array.isArray(parsed)) throw new ConfigError("AUTHHUB_TRUSTED_ISSUERS", "must be a JSON array");
  const seen = new Set<string>();
  return parsed.map((item: unknown, i: number) => {
    const where = `AUTHHUB_TRUSTED_ISSUERS[${i}]`;
    if (typeof item !== "object" || item === null) throw new ConfigError(where, "must be an object");
    const { issuer, jwksUri, audience, authorizedParties, maxTokenAgeSeconds, ...rest } = item as Record<string, unknown>;
    if (Object.keys(rest).length > 0) throw new ConfigError(where, `has unknown keys: ${Object.keys(rest).join(", ")}`);
    if (typeof issuer !== "string" || issuer === "") throw new ConfigError(`${where}.issuer`, "must be a non-empty string");
    if (seen.has(issuer)) throw new ConfigError(`${where}.issuer`, `repeats ${issuer}`);
    seen.add(issuer);
    if (typeof jwksUri !== "string") throw new ConfigError(`${where}.jwksUri`, "must be a URL");
    try {
      const u = new URL(jwksUri);
      if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error();
    } catch {
      throw new ConfigError(`${where}.jwksUri`, "must be an http(s) URL");
    }
    if (audience !== undefined && (typeof audience !== "string" || audience === "")) {
      throw new ConfigError(`${where}.audience`, "must be a non-empty string when given");
    }
    if (
      authorizedParties !== undefined &&
      (!Array.isArray(authorizedParties) ||
        authorizedParties.length === 0 ||
        authorizedParties.length > 20 ||
        !authorizedParties.every((p) => typeof p === "string" && p !== "" && p.length <= 500))
    ) {
      throw new ConfigError(`${where}.authorizedParties`, "must be a list of 1-20 non-empty strings (the azp values allowed, e.g. https://app.example.com)");
    }
    const maxAge = maxTokenAgeSeconds ?? DEFAULT_TRUSTED_TOKEN_MAX_AGE_SECONDS;
    if (typeof maxAge !== "number" || !Number.isInteger(maxAge) || maxAge < 30 || maxAge > 86_400) {
      throw new ConfigError(`${where}.maxTokenAgeSeconds`, "must be a whole number of seconds between 30 and 86400");
    }
    return {
      issuer,
      jwksUri,
      ...(audience ? { audience } : {}),
      ...(authorizedParties ? { authorizedParties: authorizedParties as string[] } : {}),
      maxTokenAgeSeconds: maxAge,
    };
  });
}

function metricsToken(env: Source): string | null {
  const token = str(env, "AUTHHUB_METRICS_TOKEN");
  if (token !== null && token.length < 16) throw new ConfigError("AUTHHUB_METRICS_TOKEN", "must be at least 16 characters (it guards operational figures)");
  return token;
}

/**
 * The configuration from `source` (the process's environment by default). Every
 * name asked for is noted as it is read, so an AUTHHUB_* variable that nothing
 * read is a setting AuthHub does not have: refused, naming it.
 */
export function readConfig(source: Source = process.env): Config {
  const asked = new Set<string>();
  const env = new Proxy(source, {
    get(target, name) {
      if (typeof name === "string") asked.add(name);
      return target[name as string];
    },
  });
  const config = readSettings(env);
  refuseUnknown(source, asked);
  return config;
}

function refuseUnknown(source: Source, known: Set<string>): void {
  for (const name of Object.keys(source).sort()) {
    if (!name.startsWith("AUTHHUB_") || known.has(name) || FOREIGN_PREFIXES.some((p) => name.startsWith(p))) continue;
    const near = [...known].filter((k) => k.startsWith("AUTHHUB_")).sort((a, b) => editDistance(name, a) - editDistance(name, b))[0];
    const hint = near !== undefined && editDistance(name, near) <= 3 ? ` (did you mean ${near}?)` : "";
    throw new ConfigError(name, `is not a setting AuthHub knows${hint}; the README's Configuration table lists them all`);
  }
}

/** Levenshtein distance, for suggesting the setting a misspelt name meant. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}

function readSettings(env: Source): Config {
  const nodeEnv = oneOf(env, "NODE_ENV", ["development", "test", "production"] as const, "development");
  const port = int(env, "PORT", 4000, 0, 65535);
  const host = str(env, "HOST") ?? "127.0.0.1";
  const databaseUrl = postgresUrl(env, "DATABASE_URL");
  const masterKey = str(env, "AUTHHUB_MASTER_KEY");
  if (nodeEnv === "production") {
    if (!masterKey) throw new ConfigError("AUTHHUB_MASTER_KEY", "is required when NODE_ENV=production");
    if (!databaseUrl) throw new ConfigError("DATABASE_URL", "is required when NODE_ENV=production (the embedded database is for development)");
  }
  const defaultPage = int(env, "AUTHHUB_GRAPHQL_DEFAULT_PAGE_SIZE", 50, 1, 1000);
  const maxPage = int(env, "AUTHHUB_GRAPHQL_MAX_PAGE_SIZE", 100, 1, 1000);
  if (defaultPage > maxPage) {
    throw new ConfigError("AUTHHUB_GRAPHQL_DEFAULT_PAGE_SIZE", `must not exceed AUTHHUB_GRAPHQL_MAX_PAGE_SIZE (${maxPage})`);
  }
  const configuredIssuer = str(env, "AUTHHUB_ISSUER");
  const issuer = configuredIssuer ?? `http://${host}:${port}`;
  try {
    // The rule the remembered issuer is held to (server/auth/issuer.ts): one that passed here but not there would
    // start a server whose issuer the database cannot remember, so the CLI could not mint for it.
    checkIssuer(issuer);
  } catch (err) {
    throw new ConfigError("AUTHHUB_ISSUER", `must be an http(s) URL of at most 500 characters (${(err as Error).message})`);
  }
  const refreshTokenTtlSeconds = int(env, "AUTHHUB_REFRESH_TOKEN_TTL", 14 * 86400, 300, 365 * 86400);
  const sessionMaxAgeSeconds = int(env, "AUTHHUB_SESSION_MAX_AGE", 30 * 86400, 300, 365 * 86400);
  if (refreshTokenTtlSeconds > sessionMaxAgeSeconds) {
    throw new ConfigError("AUTHHUB_REFRESH_TOKEN_TTL", `must not exceed AUTHHUB_SESSION_MAX_AGE (${sessionMaxAgeSeconds})`);
  }
  return {
    env: nodeEnv,
    port,
    host,
    dataDir: path.resolve(str(env, "AUTHHUB_DATA_DIR") ?? ".authhub"),
    databaseUrl,
    authDatabaseUrl: postgresUrl(env, "AUTH_DATABASE_URL"),
    rootDatabaseUrl: postgresUrl(env, "ROOT_DATABASE_URL"),
    masterKey,
    masterKeyPrevious: str(env, "AUTHHUB_MASTER_KEY_PREVIOUS"),
    issuer,
    issuerFromEnvironment: configuredIssuer !== null,
    trustedIssuers: trustedIssuers(env),
    gatewaySecret: str(env, "AUTHHUB_GATEWAY_SECRET"),
    accessTokenTtlSeconds: int(env, "AUTHHUB_ACCESS_TOKEN_TTL", 900, 60, 86400),
    refreshTokenTtlSeconds,
    sessionMaxAgeSeconds,
    trustProxy: trustProxy(env),
    webhookMaxBytes: int(env, "AUTHHUB_WEBHOOK_MAX_BYTES", 1_000_000, 10_000, 10_000_000),
    syncBulkMaxBytes: int(env, "AUTHHUB_SYNC_BULK_MAX_BYTES", 100_000_000, 1_000, 10_000_000_000),
    clerkApiUrl: httpUrl(env, "AUTHHUB_CLERK_API_URL", "https://api.clerk.com"),
    tokenRateLimit: {
      perIp: int(env, "AUTHHUB_TOKEN_RATE_LIMIT_IP", 300, 1, 1_000_000),
      perSubject: int(env, "AUTHHUB_TOKEN_RATE_LIMIT_SUBJECT", 30, 1, 1_000_000),
    },
    graphql: {
      maxDepth: int(env, "AUTHHUB_GRAPHQL_MAX_DEPTH", 10, 2, 50),
      maxPageSize: maxPage,
      defaultPageSize: defaultPage,
      maxRequestBytes: int(env, "AUTHHUB_MAX_REQUEST_BYTES", 100_000, 1_000, 10_000_000),
      maxAliases: int(env, "AUTHHUB_GRAPHQL_MAX_ALIASES", 50, 0, 10_000),
      maxRootFields: int(env, "AUTHHUB_GRAPHQL_MAX_ROOT_FIELDS", 20, 1, 1_000),
      maxMutations: int(env, "AUTHHUB_GRAPHQL_MAX_MUTATIONS", 10, 1, 1_000),
      maxCost: int(env, "AUTHHUB_GRAPHQL_MAX_COST", 50_000, 100, 10_000_000),
      introspection: oneOf(env, "AUTHHUB_GRAPHQL_INTROSPECTION", ["on", "authenticated", "off"] as const, nodeEnv === "production" ? "authenticated" : "on"),
      suggestions: oneOf(env, "AUTHHUB_GRAPHQL_SUGGESTIONS", ["on", "off"] as const, nodeEnv === "production" ? "off" : "on") === "on",
      rateLimitPerUser: int(env, "AUTHHUB_GRAPHQL_RATE_LIMIT_USER", 1_200, 1, 10_000_000),
      rateLimitPerTenant: int(env, "AUTHHUB_GRAPHQL_RATE_LIMIT_TENANT", 12_000, 1, 100_000_000),
      rateLimitAnonymous: int(env, "AUTHHUB_GRAPHQL_RATE_LIMIT_ANONYMOUS", 300, 1, 10_000_000),
    },
    logLevel: oneOf(env, "LOG_LEVEL", ["debug", "info", "warn", "error", "silent"] as const, nodeEnv === "test" ? "silent" : "info"),
    runWorker: oneOf(env, "AUTHHUB_WORKER", ["inline", "off"] as const, "inline") === "inline",
    database: {
      poolSize: int(env, "AUTHHUB_DB_POOL_SIZE", 20, 2, 1000),
      acquireTimeoutMs: int(env, "AUTHHUB_DB_ACQUIRE_TIMEOUT_MS", 5_000, 100, 60_000),
      statementTimeoutMs: int(env, "AUTHHUB_STATEMENT_TIMEOUT_MS", 10_000, 100, 600_000),
      idleInTransactionTimeoutMs: int(env, "AUTHHUB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 10_000, 100, 600_000),
      pooler: oneOf(env, "AUTHHUB_DB_POOLER", ["none", "transaction"] as const, "none"),
    },
    shutdownGraceMs: int(env, "AUTHHUB_SHUTDOWN_GRACE_MS", 10_000, 0, 600_000),
    catalog: {
      rateLimitPerAddress: int(env, "AUTHHUB_CATALOG_RATE_LIMIT_IP", 600, 1, 10_000_000),
      maxAgeSeconds: int(env, "AUTHHUB_CATALOG_MAX_AGE", 60, 0, 86_400),
    },
    metrics: { token: metricsToken(env), port: str(env, "AUTHHUB_METRICS_PORT") === null ? null : int(env, "AUTHHUB_METRICS_PORT", 0, 1, 65535) },
  };
}
