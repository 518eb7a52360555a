/**
 * Auth API benchmarks (issue 5), run by bench/run.ts against the same server:
 * token exchange (a local identity provider's token → access + refresh token)
 * and refresh (rotation), each beside GET /healthz on that server —
 * throughput at the shared concurrency, and latency one request at a time.
 * Refresh chains are sequential per client, as real clients are: each
 * concurrent client refreshes with the token its previous refresh returned.
 */
import { TOKEN_EXCHANGE } from "../server/auth/authApi.js";
import type { LocalIdp } from "../test/helpers/idp.js";

export interface Sample {
  ms: number[];
  totalMs: number;
  count: number;
}

const form = (params: Record<string, string>) => ({
  method: "POST",
  headers: { "Content-Type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(params).toString(),
});

async function timed(into: Sample, fn: () => Promise<unknown>) {
  const t = performance.now();
  await fn();
  const ms = performance.now() - t;
  into.ms.push(ms);
  into.totalMs += ms;
  into.count++;
}

export async function measureAuthApi(options: {
  base: string;
  idp: LocalIdp;
  tenant: string;
  externalId: string;
  requests: number;
  rounds: number;
  concurrency: number;
  empty: () => Sample;
}) {
  const { base, idp, tenant, externalId, requests, rounds, concurrency, empty } = options;
  // Subject tokens are the identity provider's work, not AuthHub's: made up front.
  const subjectTokens = await Promise.all(Array.from({ length: 50 }, () => idp.sign(externalId, { exp: Math.floor(Date.now() / 1000) + 3600 })));
  let n = 0;
  const exchange = async (): Promise<string> => {
    const r = await fetch(
      `${base}/auth/token`,
      form({
        grant_type: TOKEN_EXCHANGE,
        subject_token: subjectTokens[n++ % subjectTokens.length]!,
        subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
        tenant,
      }),
    );
    const body = (await r.json()) as { refresh_token?: string };
    if (r.status !== 200 || !body.refresh_token) throw new Error(`exchange failed: ${r.status} ${JSON.stringify(body)}`);
    return body.refresh_token;
  };
  const refresh = async (token: string): Promise<string> => {
    const r = await fetch(`${base}/auth/token`, form({ grant_type: "refresh_token", refresh_token: token }));
    const body = (await r.json()) as { refresh_token?: string };
    if (r.status !== 200 || !body.refresh_token) throw new Error(`refresh failed: ${r.status} ${JSON.stringify(body)}`);
    return body.refresh_token;
  };
  const health = () => fetch(`${base}/healthz`).then((r) => r.json());

  /** `concurrency` clients, each making its share of `total` calls in turn. */
  async function concurrent(total: number, into: Sample, client: () => () => Promise<unknown>) {
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async (_, i) => {
        const next = client();
        for (let k = i; k < total; k += concurrency) {
          const t = performance.now();
          await next();
          into.ms.push(performance.now() - t);
        }
      }),
    );
    into.totalMs += performance.now() - started;
    into.count += total;
  }
  const refreshClient = () => {
    let token: Promise<string> = exchange();
    return async () => {
      token = refresh(await token);
      await token;
    };
  };

  // Warm-up.
  await concurrent(50, empty(), () => exchange);
  await concurrent(50, empty(), refreshClient);
  const throughput = { exchange: empty(), refresh: empty(), health: empty() };
  for (let round = 0; round < rounds; round++) {
    await concurrent(requests, throughput.health, () => health);
    await concurrent(requests, throughput.exchange, () => exchange);
    await concurrent(requests, throughput.refresh, refreshClient);
  }
  const latency = { exchange: empty(), refresh: empty(), health: empty() };
  let chain = await exchange();
  for (let i = 0; i < rounds * requests; i++) {
    await timed(latency.health, health);
    await timed(latency.exchange, exchange);
    await timed(latency.refresh, async () => {
      chain = await refresh(chain);
    });
  }
  return { throughput, latency };
}
