/**
 * `npm start` as a user runs it: a fresh data directory, embedded Postgres,
 * migrations, server and worker; the CLI next to it on the same database; a
 * graceful SIGTERM that stops Postgres last; a restart that reuses the data;
 * and a restart after SIGKILL that takes over the orphaned postmaster.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { runCli } from "../../server/cli.js";
import { jest } from "@jest/globals";
import { embeddedRunning, killLeftovers, serverEnv, startServer, type RunningServer } from "../helpers/process.js";

jest.setTimeout(90_000);

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), "authhub-start-"));
});
afterAll(async () => {
  killLeftovers(dataDir);
  await rm(dataDir, { recursive: true, force: true });
});

const env = () => serverEnv(dataDir);
const start = () => startServer(env());
const stop = (r: RunningServer, signal: NodeJS.Signals = "SIGTERM") => r.stop(signal);
const pgRunning = () => embeddedRunning(dataDir);

test("boot, serve, use the CLI alongside, and shut down in order", async () => {
  const first = await start();
  expect((await fetch(`${first.base}/readyz`)).status).toBe(200);

  // The CLI shares the running embedded database.
  const quiet = jest.spyOn(process.stdout, "write").mockImplementation(() => true);
  let token: string;
  try {
    const cliEnv = env();
    expect(await runCli(["bootstrap", "--tenant", "acme", "--admin-email", "admin@acme.test"], cliEnv)).toBe(0);
    quiet.mockClear();
    expect(await runCli(["token", "--tenant", "acme", "--email", "admin@acme.test", "--json"], cliEnv)).toBe(0);
    token = JSON.parse(String(quiet.mock.calls[0]![0])).token;
  } finally {
    quiet.mockRestore();
  }
  const res = await fetch(`${first.base}/graphql`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: "{ currentUser { email level } }" }),
  });
  expect((await res.json()).data).toEqual({ currentUser: { email: "admin@acme.test", level: "TENANT_ADMIN" } });
  expect(pgRunning()).toBe(true);
  // One structured log line per request, with its trace id.
  let logged: Record<string, unknown> | undefined;
  for (let i = 0; i < 100 && !logged; i++) {
    logged = first.lines().find((l) => l.msg === "request" && l.path === "/graphql");
    if (!logged) await new Promise((r) => setTimeout(r, 20));
  }
  expect(logged).toMatchObject({ level: "info", method: "POST", status: 200, via: "bearer", trace_id: expect.stringMatching(/^[0-9a-f]{32}$/) });

  expect(await stop(first)).toBe(0);
  const order = first
    .lines()
    .map((l) => String(l.msg))
    .filter((m) => m.startsWith("shutdown: "));
  expect(order).toEqual([
    "shutdown: http server stopped",
    "shutdown: graphql stopped",
    "shutdown: worker stopped",
    "shutdown: authenticator pool stopped",
    "shutdown: owner pool stopped",
    "shutdown: database stopped",
    "shutdown: lock stopped",
  ]);
  expect(pgRunning()).toBe(false);
});

test("a second start reuses the data; after a SIGKILL the next start takes over the orphaned postmaster", async () => {
  const second = await start();
  const ask = async (base: string) => {
    const r = await fetch(`${base}/graphql`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query: '{ tenantBranding(slug: "acme") { slug } }' }),
    });
    return (await r.json()).data;
  };
  expect(await ask(second.base)).toEqual({ tenantBranding: { slug: "acme" } });

  await stop(second, "SIGKILL");
  expect(pgRunning()).toBe(true); // the orphan

  const third = await start();
  expect(third.lines().some((l) => String(l.msg).includes("taking it over"))).toBe(true);
  expect(await ask(third.base)).toEqual({ tenantBranding: { slug: "acme" } });
  expect(await stop(third)).toBe(0);
  expect(pgRunning()).toBe(false);
});
