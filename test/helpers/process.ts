/**
 * AuthHub as a user runs it, in a child process: `server/main.ts` on the pinned
 * Node, with its own data directory (the embedded PostgreSQL) unless the
 * environment names a database. Tests read its JSON log lines, send it
 * signals, and see it exit; afterwards nothing is left running.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Webhook } from "svix";

export interface RunningServer {
  child: ChildProcess;
  /** http://127.0.0.1:<port> */
  base: string;
  /** The JSON lines logged so far. */
  lines: () => Record<string, unknown>[];
  /** Everything written to stderr so far. */
  stderr: () => string;
  exited: Promise<number | null>;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const children: ChildProcess[] = [];

/** The environment of a server on `dataDir`'s embedded database, with nothing of the caller's database settings. */
export function serverEnv(dataDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, AUTHHUB_DATA_DIR: dataDir, PORT: "0", NODE_ENV: "development", LOG_LEVEL: "info" };
  for (const k of ["DATABASE_URL", "ROOT_DATABASE_URL", "AUTH_DATABASE_URL", "AUTHHUB_MASTER_KEY"]) delete e[k];
  return { ...e, ...extra };
}

/**
 * Spawns `entry` on the pinned Node, collects its output, and resolves once a
 * JSON line satisfies `ready` (rejecting if the process exits first). The one
 * spawner behind startServer and startWorkerProcess.
 */
async function spawnLogged(
  entry: string,
  env: NodeJS.ProcessEnv,
  ready: (line: Record<string, unknown>) => boolean,
  what: string,
): Promise<RunningWorker & { readyLine: Record<string, unknown> }> {
  const child = spawn(process.execPath, ["--import", "tsx", entry], { env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const lines = () =>
    out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const readyLine = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setInterval(() => {
      const line = lines().find(ready);
      if (line) {
        clearInterval(timer);
        resolve(line);
      }
    }, 50);
    void exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`${what} exited (${code}) before it was ready:\n${out}\n${err}`));
    });
  });
  return {
    child,
    lines,
    stderr: () => err,
    exited,
    readyLine,
    stop(signal: NodeJS.Signals = "SIGTERM") {
      child.kill(signal);
      return exited;
    },
  };
}

export async function startServer(env: NodeJS.ProcessEnv, entry = "server/main.ts"): Promise<RunningServer> {
  const { readyLine, ...running } = await spawnLogged(entry, env, (l) => l.msg === "AuthHub is ready", "server");
  return { ...running, base: String(readyLine.graphql).replace(/\/graphql$/, "") };
}

/** Whether the embedded PostgreSQL of `dataDir` is running (its postmaster.pid exists). */
export const embeddedRunning = (dataDir: string) => existsSync(path.join(dataDir, "pg", "postmaster.pid"));

/** For afterAll: no server, no postmaster left behind by a failed test. */
export function killLeftovers(dataDir: string): void {
  killChildren();
  const pidFile = path.join(dataDir, "pg", "postmaster.pid");
  if (existsSync(pidFile)) {
    const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
    try {
      process.kill(pid, "SIGQUIT");
    } catch {
      // already gone
    }
  }
}

/** Polls `check` every 50 ms until it holds or `ms` pass; answers whether it held. */
export async function eventually(check: () => Promise<boolean> | boolean, ms = 10_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      if (await check()) return true;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** Runs `npx authhub <args> --json` in this process against `env`'s database; answers the JSON it printed. */
export async function cliJson<T = Record<string, unknown>>(args: string[], env: NodeJS.ProcessEnv): Promise<T> {
  const { runCli } = await import("../../server/cli.js");
  let printed = "";
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (chunk: string | Uint8Array) => {
    printed += String(chunk);
    return true;
  };
  let code: number;
  try {
    code = await runCli([...args, "--json"], env);
  } finally {
    process.stdout.write = write;
  }
  if (code !== 0) throw new Error(`authhub ${args.join(" ")} exited ${code}`);
  return JSON.parse(printed.trim().split("\n").at(-1)!) as T;
}

/** A superuser URL for the embedded cluster of `dataDir` (from the cluster.json it keeps). */
export function embeddedRootUrl(dataDir: string, database = "authhub"): string {
  const { port, password } = JSON.parse(readFileSync(path.join(dataDir, "cluster.json"), "utf8")) as { port: number; password: string };
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

/**
 * The environment of a server or worker process on a test database (the owner
 * and authenticator URLs of test/helpers/db.ts), sharing `masterKey` and
 * `issuer`, with no embedded data directory of the caller's.
 */
export function databaseEnv(db: { ownerUrl: string; authUrl: string }, masterKey: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: "test",
    LOG_LEVEL: "info",
    PORT: "0",
    DATABASE_URL: db.ownerUrl,
    AUTH_DATABASE_URL: db.authUrl,
    AUTHHUB_MASTER_KEY: masterKey,
    AUTHHUB_ISSUER: "http://authhub.test",
  };
  for (const k of ["ROOT_DATABASE_URL", "AUTHHUB_DATA_DIR", "AUTHHUB_MASTER_KEY_PREVIOUS", "AUTHHUB_METRICS_PORT", "AUTHHUB_METRICS_TOKEN"]) delete e[k];
  return { ...e, ...extra };
}

export interface RunningWorker {
  child: ChildProcess;
  lines: () => Record<string, unknown>[];
  stderr: () => string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `worker/main.ts` (`npm run worker`) in a child process; resolves once its worker has started. */
export async function startWorkerProcess(env: NodeJS.ProcessEnv): Promise<RunningWorker> {
  const { readyLine: _, ...running } = await spawnLogged("worker/main.ts", env, (l) => l.msg === "worker started", "worker");
  return running;
}

/** For afterAll of tests on a test database: every child process started here that still runs is killed. */
export function killChildren(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

/**
 * For a test file of servers on their own embedded database: a fresh data
 * directory (read it through the answered getter once beforeAll has run), and
 * afterAll kills what is left and removes it.
 */
export function useDataDir(prefix: string): () => string {
  let dataDir = "";
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), `authhub-${prefix}-`));
  });
  afterAll(async () => {
    killLeftovers(dataDir);
    await rm(dataDir, { recursive: true, force: true });
  });
  return () => dataDir;
}

/** Posts `event` to a running server's webhook `endpoint` as Svix delivers it: signed now with the endpoint's secret. */
export function deliverWebhook(base: string, endpoint: { path: string; secret: string }, event: unknown, id: string): Promise<Response> {
  const body = JSON.stringify(event);
  const now = new Date();
  return fetch(`${base}${endpoint.path}`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "svix-id": id,
      "svix-timestamp": String(Math.floor(now.getTime() / 1000)),
      "svix-signature": new Webhook(endpoint.secret).sign(id, now, body),
    },
    body,
  });
}

/** A Clerk user event (`user.created`, `user.updated`) as Clerk's webhooks send it. */
export const clerkUserEvent = (type: string, id: string, email: string, updatedAt = Date.now()) => ({
  type,
  object: "event",
  timestamp: updatedAt,
  data: {
    id,
    object: "user",
    first_name: "Clerk",
    last_name: id,
    primary_email_address_id: `idn_${id}`,
    email_addresses: [{ id: `idn_${id}`, email_address: email }],
    updated_at: updatedAt,
  },
});
