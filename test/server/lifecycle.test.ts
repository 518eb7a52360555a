/**
 * What a real `npm start` keeps across its start and stop (issue 13): the issuer
 * chosen at the first start is remembered in the database, so the CLI mints
 * tokens the server accepts whatever PORT each was given, and changing it is an
 * explicit `npx authhub issuer set`; API-key use counted in memory is recorded
 * by the ordered shutdown on SIGTERM; an unknown AUTHHUB_* variable stops the
 * start, naming it.
 */
import { jest } from "@jest/globals";
import { signRequest } from "../../client/index.js";
import { cliJson, serverEnv, startServer, useDataDir } from "../helpers/process.js";

jest.setTimeout(180_000);

const dataDir = useDataDir("lifecycle");

/** The server: any free port, the worker left out (nothing here needs it, and the stop is quicker). */
const serverEnvironment = () => serverEnv(dataDir(), { AUTHHUB_WORKER: "off" });
/** Another terminal: the same data directory, and no PORT at all. */
function cliEnvironment(): NodeJS.ProcessEnv {
  const env = serverEnv(dataDir());
  delete env.PORT;
  delete env.AUTHHUB_ISSUER;
  return env;
}

async function whoami(base: string, token: string): Promise<string> {
  const res = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: "{ currentUser { email } }" }),
  });
  const body = (await res.json()) as { data?: { currentUser: { email: string } | null }; errors?: { message: string }[] };
  return res.status === 200 ? (body.data?.currentUser?.email ?? "nobody") : `${res.status} ${body.errors?.[0]?.message}`;
}

test("the issuer is chosen at the first start and remembered: a CLI without PORT mints tokens the server accepts; changing it is explicit", async () => {
  const first = await startServer(serverEnvironment());
  let token: string;
  try {
    const ready = first.lines().find((l) => l.msg === "AuthHub is ready")!;
    expect(ready).toMatchObject({ issuer: first.base, issuer_source: "default" });
    expect(first.stderr()).toContain(`Issuer:    ${first.base}   (chosen now and remembered; change it with npx authhub issuer set <url>)`);

    const cli = cliEnvironment();
    await cliJson(["bootstrap", "--tenant", "acme", "--admin-email", "admin@acme.test"], cli);
    token = (await cliJson<{ token: string }>(["token", "--tenant", "acme", "--email", "admin@acme.test"], cli)).token;
    expect(await whoami(first.base, token)).toBe("admin@acme.test");
    expect(await cliJson(["issuer", "show"], cli)).toEqual({ issuer: first.base, source: "database" });
  } finally {
    expect(await first.stop()).toBe(0);
  }

  // A second start on another port keeps the remembered issuer: the token still works.
  const second = await startServer(serverEnvironment());
  try {
    expect(second.base).not.toBe(first.base);
    expect(second.lines().find((l) => l.msg === "AuthHub is ready")).toMatchObject({ issuer: first.base, issuer_source: "database" });
    expect(second.stderr()).toContain(`Issuer:    ${first.base}   (remembered; change it with npx authhub issuer set <url>)`);
    expect(await whoami(second.base, token)).toBe("admin@acme.test");
  } finally {
    expect(await second.stop()).toBe(0);
  }

  // Changing it is an explicit act; the servers take it at their next start.
  const cli = cliEnvironment();
  expect(await cliJson(["issuer", "set", "https://auth.acme.test"], cli)).toEqual({ issuer: "https://auth.acme.test", source: "database" });
  await expect(cliJson(["issuer", "set", "not a url"], cli)).rejects.toThrow(/exited 2/);
  const third = await startServer(serverEnvironment());
  try {
    expect(third.lines().find((l) => l.msg === "AuthHub is ready")).toMatchObject({ issuer: "https://auth.acme.test", issuer_source: "database" });
    expect(await whoami(third.base, token)).toBe("401 The token's issuer is not trusted.");
    const fresh = (await cliJson<{ token: string }>(["token", "--tenant", "acme", "--email", "admin@acme.test"], cli)).token;
    expect(await whoami(third.base, fresh)).toBe("admin@acme.test");
    const discovery = (await (await fetch(`${third.base}/.well-known/openid-configuration`)).json()) as { issuer: string };
    expect(discovery.issuer).toBe("https://auth.acme.test");
  } finally {
    expect(await third.stop()).toBe(0);
  }
});

test("API-key use counted in memory is recorded by the shutdown on SIGTERM", async () => {
  const cli = cliEnvironment();
  await cliJson(["bootstrap", "--tenant", "acme", "--admin-email", "admin@acme.test"], cli);
  const key = await cliJson<{ key_id: string; secret: string }>(["apikey", "create", "--tenant", "acme", "--scopes", "user:read", "--name", "counted"], cli);
  const server = await startServer(serverEnvironment());
  const served = 7;
  try {
    for (let i = 0; i < served; i++) {
      const res = await fetch(`${server.base}/open/v1/me`, { headers: signRequest({ keyId: key.key_id, secret: key.secret, method: "GET", url: "/open/v1/me" }) });
      await res.arrayBuffer();
      expect(res.status).toBe(200);
    }
  } finally {
    // At once: the counts of the last requests are still in memory.
    expect(await server.stop("SIGTERM")).toBe(0);
  }
  expect(server.lines().some((l) => l.msg === "shutdown: graphql stopped")).toBe(true);
  const { keys } = await cliJson<{ keys: { key_id: string; request_count: string | number; last_used_at: string | null }[] }>(["apikey", "list", "--tenant", "acme"], cli);
  const counted = keys.find((k) => k.key_id === key.key_id)!;
  expect(Number(counted.request_count)).toBe(served);
  expect(counted.last_used_at).not.toBeNull();
});

test("an unknown AUTHHUB_* variable stops the start with a message naming it", async () => {
  await expect(startServer(serverEnv(dataDir(), { AUTHHUB_SHUTDOWN_GRACE: "5000" }))).rejects.toThrow(
    /AuthHub failed to start: Invalid configuration: AUTHHUB_SHUTDOWN_GRACE is not a setting AuthHub knows \(did you mean AUTHHUB_SHUTDOWN_GRACE_MS\?\)/,
  );
});
