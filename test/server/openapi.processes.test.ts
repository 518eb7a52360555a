/**
 * Per-key rate limits hold across server processes (issue 6): two real
 * `server/main.ts` processes on one database, 1,050 signed requests against a
 * key limited to 1,000 a minute, spread over both.
 */
import { jest } from "@jest/globals";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { signRequest } from "../../client/index.js";
import { parseMasterKey } from "../../server/auth/masterKey.js";
import { issueApiKey } from "../../server/openapi/issue.js";
import type { TestDatabase } from "../helpers/db.js";
import { useFixtureDatabase, type Fixtures } from "../helpers/fixtures.js";

jest.setTimeout(120_000);

let db: TestDatabase;
let f: Fixtures;
useFixtureDatabase((database, fixtures) => {
  db = database;
  f = fixtures;
});

const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
});

/** A server process on the test database; resolves with its base URL once it is ready. */
function startServer(masterKey: string): Promise<string> {
  const child = spawn(process.execPath, ["--import", "tsx", "server/main.ts"], {
    env: {
      ...process.env,
      NODE_ENV: "test",
      LOG_LEVEL: "info",
      PORT: "0",
      AUTHHUB_WORKER: "off",
      DATABASE_URL: db.ownerUrl,
      AUTH_DATABASE_URL: db.authUrl,
      AUTHHUB_MASTER_KEY: masterKey,
      ROOT_DATABASE_URL: "",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => {
      out += d;
      const ready = out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { msg?: string; graphql?: string })
        .find((l) => l.msg === "AuthHub is ready");
      if (ready) resolve(String(ready.graphql).replace(/\/graphql$/, ""));
    });
    child.on("exit", (code) => reject(new Error(`server exited (${code}):\n${out}\n${err}`)));
  });
}

test("1,050 requests in a minute against a 1,000 limit on two processes: at least 50 refused, never over 1,000 served", async () => {
  const masterKey = randomBytes(32).toString("base64");
  const [a, b] = await Promise.all([startServer(masterKey), startServer(masterKey)]);
  const key = await issueApiKey(db.owner, parseMasterKey(masterKey), { name: "load", scopes: ["org:read"], tenantId: f.a.id, rateLimitPerMinute: 1000 });
  const statuses: number[] = [];
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 8 }, async (_, worker) => {
      while (next < 1050) {
        next++;
        const base = worker % 2 === 0 ? a : b;
        const headers = signRequest({ keyId: key.keyId, secret: key.secret, method: "GET", url: "/open/v1/me" });
        const res = await fetch(`${base}/open/v1/me`, { headers });
        await res.arrayBuffer();
        statuses.push(res.status);
      }
    }),
  );
  expect(Date.now() - started).toBeLessThan(60_000);
  const ok = statuses.filter((s) => s === 200).length;
  const limited = statuses.filter((s) => s === 429).length;
  expect(ok + limited).toBe(1050);
  expect(ok).toBeLessThanOrEqual(1000);
  expect(limited).toBeGreaterThanOrEqual(50);
});
