/**
 * Open API benchmarks (issue 6), run by bench/run.ts: a signed
 * `GET /open/v1/users?limit=20` against the same handler with authentication
 * skipped, with the key read from the database on every request and with the
 * key cache valid (targets ≥ 0.5 and ≥ 0.85), and with rate limiting on vs off
 * (target ≥ 0.9). Each variant is its own server on the same pool; rounds
 * alternate between them, and requests are signed before a round starts (the
 * partner's signing is not the server's cost).
 */
import express from "express";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type pg from "pg";
import { signRequest } from "../client/index.js";
import type { MasterKey } from "../server/auth/masterKey.js";
import { ApiKeyStore } from "../server/openapi/keys.js";
import { issueApiKey } from "../server/openapi/issue.js";
import { openApiRouter, type OpenApiOptions } from "../server/openapi/router.js";
import { RateLimits } from "../server/rateLimit.js";
import { readConfig, transactionLimits } from "../server/config.js";

export interface Sample {
  ms: number[];
  totalMs: number;
  count: number;
}

const PATH = "/open/v1/users?limit=20";

export async function measureOpenApi(options: {
  owner: pg.Pool;
  auth: pg.Pool;
  masterKey: MasterKey;
  tenantId: string;
  requests: number;
  rounds: number;
  concurrency: number;
  empty: () => Sample;
}) {
  const { owner, auth, masterKey, tenantId, requests, rounds, concurrency, empty } = options;
  const key = await issueApiKey(owner, masterKey, { name: "bench", scopes: ["user:read"], tenantId, rateLimitPerMinute: 1_000_000 });
  const record = (await new ApiKeyStore(auth, masterKey, 0).get(key.keyId))!;
  const rateLimits = new RateLimits(auth);
  const base: Omit<OpenApiOptions, "keyCacheMs" | "rateLimiting" | "actAs"> = {
    authPool: auth,
    limits: transactionLimits(readConfig({})),
    masterKey,
    rateLimits,
    maxBodyBytes: 100_000,
  };
  const variants: Record<string, Partial<OpenApiOptions>> = {
    skipped: { actAs: record, rateLimiting: false },
    signedNoCache: { keyCacheMs: 0, rateLimiting: false },
    signedCached: { keyCacheMs: 1000, rateLimiting: false },
    signedCachedLimited: { keyCacheMs: 1000, rateLimiting: true },
  };
  const servers: Record<string, { url: string; server: http.Server }> = {};
  for (const [name, opts] of Object.entries(variants)) {
    const app = express();
    app.use(openApiRouter({ ...base, ...opts }));
    const server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    servers[name] = { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
  }
  const run = async (name: string, into: Sample) => {
    const signed = variants[name]!.actAs ? null : Array.from({ length: requests }, () => signRequest({ keyId: key.keyId, secret: key.secret, method: "GET", url: PATH }));
    const url = `${servers[name]!.url}${PATH}`;
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < requests) {
          const i = next++;
          const t = performance.now();
          const res = await fetch(url, { headers: signed ? signed[i]! : {} });
          if (res.status !== 200) throw new Error(`${name}: ${res.status} ${await res.text()}`);
          await res.arrayBuffer();
          into.ms.push(performance.now() - t);
        }
      }),
    );
    into.totalMs += performance.now() - started;
    into.count += requests;
  };
  const samples: Record<string, Sample> = Object.fromEntries(Object.keys(variants).map((n) => [n, empty()]));
  try {
    for (const name of Object.keys(variants)) await run(name, empty());
    for (let round = 0; round < rounds; round++) {
      for (const name of Object.keys(variants)) await run(name, samples[name]!);
    }
  } finally {
    for (const { server } of Object.values(servers)) await new Promise((r) => server.close(r));
  }
  return { skipped: samples.skipped!, signedNoCache: samples.signedNoCache!, signedCached: samples.signedCached!, signedCachedLimited: samples.signedCachedLimited! };
}
