/**
 * Auth API benchmarks (issue 5), run by bench/run.ts against the same server:
 * token exchange (a local identity provider's token → access + refresh token)
 * and refresh (rotation), each beside GET /healthz on that server —
 * throughput at the shared concurrency, and latency one request at a time.
 * Refresh chains are sequential per caller, as real clients are: each call
 * refreshes with a token its chain's previous refresh returned (one chain per
 * concurrent caller, so no token is used twice).
 */
import { TOKEN_EXCHANGE } from "../server/auth/authApi.js";
import type { BenchContext } from "./context.js";
import type { BenchServer } from "./http.js";
import { bursts, interleave, latencyRow, ratioRow, type Row } from "./stats.js";

const form = (params: Record<string, string>) => ({
  method: "POST",
  headers: { "Content-Type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(params).toString(),
});

export async function measureAuthApi(ctx: BenchContext, server: BenchServer, options: { tenant: string; externalId: string }): Promise<Row[]> {
  const { sizes } = ctx;
  const { base, idp } = server;
  const { tenant, externalId } = options;
  process.stderr.write("auth api: token exchange and refresh…\n");
  // Subject tokens are the identity provider's work, not AuthHub's: made up front.
  const subjectTokens = await Promise.all(Array.from({ length: 50 }, () => idp.sign(externalId, { exp: Math.floor(Date.now() / 1000) + 3600 })));
  let n = 0;
  const exchange = async (): Promise<string> => {
    const r = await fetch(
      `${base}/auth/token`,
      form({ grant_type: TOKEN_EXCHANGE, subject_token: subjectTokens[n++ % subjectTokens.length]!, subject_token_type: "urn:ietf:params:oauth:token-type:jwt", tenant }),
    );
    const body = (await r.json()) as { refresh_token?: string };
    if (r.status !== 200 || !body.refresh_token) throw new Error(`exchange failed: ${r.status} ${JSON.stringify(body)}`);
    return body.refresh_token;
  };
  const refreshWith = async (token: string): Promise<string> => {
    const r = await fetch(`${base}/auth/token`, form({ grant_type: "refresh_token", refresh_token: token }));
    const body = (await r.json()) as { refresh_token?: string };
    if (r.status !== 200 || !body.refresh_token) throw new Error(`refresh failed: ${r.status} ${JSON.stringify(body)}`);
    return body.refresh_token;
  };
  // One chain per concurrent caller: a call takes a chain's latest token and puts back its successor.
  const chains: string[] = [];
  for (let i = 0; i < sizes.httpConcurrency; i++) chains.push(await exchange());
  const refresh = async () => {
    const token = chains.pop();
    if (!token) throw new Error("refresh: more callers than chains");
    chains.push(await refreshWith(token));
  };
  const health = () => fetch(`${base}/healthz`).then((r) => r.json());
  const sides = [
    { name: "health", run: health },
    { name: "exchange", run: exchange },
    { name: "refresh", run: refresh },
  ];
  const rate = await bursts(sizes.rounds, sides, { requests: sizes.httpPerRound, concurrency: sizes.httpConcurrency, warmup: 50 });
  const latency = await interleave(sizes.rounds, sides, { calls: sizes.httpPerRound, warmup: 20 });
  return [
    ratioRow({ benchmark: "Auth: token exchange ÷ /healthz (throughput)", numerator: rate.exchange!, denominator: rate.health!, target: "report", names: ["exchange", "healthz"] }),
    latencyRow({ benchmark: "Auth: token exchange p99, one at a time", samples: latency.exchange!, metric: "p99", target: "report", name: "exchange", note: "aim p99 ≤ 10 ms" }),
    ratioRow({ benchmark: "Auth: refresh ÷ /healthz (throughput)", numerator: rate.refresh!, denominator: rate.health!, target: "report", names: ["refresh", "healthz"] }),
    latencyRow({ benchmark: "Auth: refresh p99, one at a time", samples: latency.refresh!, metric: "p99", target: { atMost: 10 }, name: "refresh" }),
  ];
}
