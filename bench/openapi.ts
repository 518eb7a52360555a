/**
 * Open API benchmarks (issue 6), run by bench/run.ts: a signed
 * `GET /open/v1/users?limit=20` against the same handler with authentication
 * skipped, with the key read from the database on every request and with the
 * key cache valid (targets ≥ 0.5 and ≥ 0.85), and with rate limiting on vs off
 * (target ≥ 0.9). Each variant is its own server on the same pool; each round
 * runs a burst of each (bench/stats.ts bursts, the order rotating), and a
 * burst's requests are signed before it starts (the partner's signing is not
 * the server's cost).
 */
import express from "express";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { signRequest } from "../client/index.js";
import type { MasterKey } from "../server/auth/masterKey.js";
import { ApiKeyStore } from "../server/openapi/keys.js";
import { issueApiKey } from "../server/openapi/issue.js";
import { openApiRouter, type OpenApiOptions } from "../server/openapi/router.js";
import { RateLimits } from "../server/rateLimit.js";
import { readConfig, transactionLimits } from "../server/config.js";
import type { BenchContext } from "./context.js";
import { bursts, ratioRow, type Row, type Side } from "./stats.js";

const PATH = "/open/v1/users?limit=20";

export async function measureOpenApi(ctx: BenchContext, masterKey: MasterKey): Promise<Row[]> {
  const { owner, auth, small, sizes } = ctx;
  process.stderr.write("open api: signed requests…\n");
  const key = await issueApiKey(owner, masterKey, { name: "bench", scopes: ["user:read"], tenantId: small.tenantId, rateLimitPerMinute: 1_000_000 });
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
  const servers: http.Server[] = [];
  const sides: Side[] = [];
  const warmup = 50;
  for (const [name, opts] of Object.entries(variants)) {
    const app = express();
    app.use(openApiRouter({ ...base, ...opts }));
    const server = http.createServer(app);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${PATH}`;
    let signed: Record<string, string>[] = [];
    sides.push({
      name,
      before: async () => {
        if (!opts.actAs)
          signed = Array.from({ length: Math.max(sizes.httpPerRound, warmup) }, () => signRequest({ keyId: key.keyId, secret: key.secret, method: "GET", url: PATH }));
      },
      run: async () => {
        const res = await fetch(url, { headers: opts.actAs ? {} : signed.pop()! });
        if (res.status !== 200) throw new Error(`${name}: ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
      },
    });
  }
  try {
    const s = await bursts(sizes.rounds, sides, { requests: sizes.httpPerRound, concurrency: sizes.httpConcurrency, warmup });
    return [
      ratioRow({
        benchmark: "Open API: signed GET /open/v1/users ÷ authentication skipped, key read per request (throughput)",
        numerator: s.signedNoCache!,
        denominator: s.skipped!,
        target: { atLeast: 0.5 },
        names: ["signed", "skipped"],
      }),
      ratioRow({
        benchmark: "Open API: signed GET /open/v1/users ÷ authentication skipped, key cache valid (throughput)",
        numerator: s.signedCached!,
        denominator: s.skipped!,
        target: { atLeast: 0.85 },
        names: ["signed", "skipped"],
      }),
      ratioRow({
        benchmark: "Open API: rate limiting on ÷ off (signed, key cached; throughput)",
        numerator: s.signedCachedLimited!,
        denominator: s.signedCached!,
        target: { atLeast: 0.9 },
        names: ["limited", "unlimited"],
      }),
    ];
  } finally {
    for (const server of servers) await new Promise((r) => server.close(r));
  }
}
