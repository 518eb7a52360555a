/**
 * A real PgBouncer in transaction mode in front of the test cluster (issue 15):
 * Debian's `pgbouncer` binary run as a child process with a config written in
 * a temporary directory, so nothing of the machine's own PgBouncer (its
 * systemd service, /etc/pgbouncer) is needed or touched.
 *
 * - Every database name is forwarded (`* = host=… port=…`), so each test
 *   file's cloned database is reachable through the one pooler.
 * - Clients are not authenticated (`auth_type = trust`); the auth file holds
 *   the login roles' passwords in clear, which PgBouncer uses to log in to
 *   PostgreSQL (the embedded cluster asks for scram, a server that trusts
 *   local roles asks for nothing).
 * - PgBouncer refuses to run as root: as root it is started with `-u` and a
 *   user that exists (PGBOUNCER_USER, else `postgres`, else `nobody`), and the
 *   directory is handed to that user.
 *
 * PGBOUNCER_BIN names another binary; without one (no /usr/sbin/pgbouncer, none
 * on PATH) `pgbouncerBinary()` answers null and the pooled tests skip.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type pg from "pg";
import { freePort } from "../../db/embedded.js";
import { makePool } from "../../db/pools.js";
import type { TestDatabase } from "./db.js";

export interface PgBouncer {
  /** The port it listens on, on 127.0.0.1. */
  port: number;
  /** `url` with its host and port replaced by the pooler's (user, password and database kept). */
  through(url: string): string;
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  /** Any URL of the PostgreSQL to pool (its host and port are used). */
  serverUrl: string;
  /** Login roles that may connect, with the password PostgreSQL wants (null: none). */
  users: { name: string; password: string | null }[];
  /** Server connections per database and user (default 10). */
  poolSize?: number;
  /** Users that may read the console's SHOW commands (database `pgbouncer`): which clients are connected through it. */
  statsUsers?: string[];
}

const executable = (file: string) => {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** The pgbouncer binary to run, or null when the machine has none. */
export function pgbouncerBinary(): string | null {
  const named = process.env.PGBOUNCER_BIN;
  if (named) return executable(named) ? named : null;
  if (executable("/usr/sbin/pgbouncer")) return "/usr/sbin/pgbouncer";
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir && executable(path.join(dir, "pgbouncer"))) return path.join(dir, "pgbouncer");
  }
  return null;
}

export const PGBOUNCER_MISSING = "pgbouncer is not installed (apt-get install -y pgbouncer, or PGBOUNCER_BIN=<path>): the pooled tests are skipped";

/** The unprivileged user a root process hands PgBouncer to: uid and gid. */
function runAsUser(): { name: string; uid: number; gid: number } {
  const candidates = [process.env.PGBOUNCER_USER, "postgres", "nobody"].filter((n): n is string => !!n);
  for (const name of candidates) {
    const uid = spawnSync("id", ["-u", name], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", name], { encoding: "utf8" });
    if (uid.status === 0 && gid.status === 0) return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  }
  throw new Error(`PgBouncer refuses to run as root, and none of the users ${candidates.join(", ")} exists to run it as`);
}

const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  const binary = pgbouncerBinary();
  if (!binary) throw new Error(PGBOUNCER_MISSING);
  const server = new URL(options.serverUrl);
  const dir = await mkdtemp(path.join(os.tmpdir(), "authhub-pgbouncer-"));
  const asRoot = process.getuid?.() === 0;
  const user = asRoot ? runAsUser() : null;
  const ini = path.join(dir, "pgbouncer.ini");
  const userlist = path.join(dir, "userlist.txt");
  const port = await freePort();
  await writeFile(userlist, options.users.map((u) => `${quote(u.name)} ${quote(u.password ?? "")}\n`).join(""), { mode: 0o600 });
  await writeFile(
    ini,
    [
      "[databases]",
      `* = host=${server.hostname.replace(/^\[|\]$/g, "")} port=${server.port || "5432"}`,
      "",
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = trust",
      `auth_file = ${userlist}`,
      "pool_mode = transaction",
      `default_pool_size = ${options.poolSize ?? 10}`,
      "max_client_conn = 1000",
      // node-postgres sends no other startup parameter; this one is common in other clients.
      "ignore_startup_parameters = extra_float_digits",
      `stats_users = ${(options.statsUsers ?? []).join(",")}`,
      "log_connections = 0",
      "log_disconnections = 0",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  if (user) {
    for (const file of [dir, ini, userlist]) await chown(file, user.uid, user.gid);
  }

  const log: string[] = [];
  const child: ChildProcess = spawn(binary, [...(user ? ["-u", user.name] : []), ini], { stdio: ["ignore", "pipe", "pipe"] });
  const keep = (chunk: Buffer) => {
    log.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    log.splice(0, Math.max(0, log.length - 40));
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const state: { exited: number | string | null } = { exited: null };
  const exit = new Promise<void>((resolve) => child.once("exit", (code, signal) => ((state.exited = code ?? signal ?? "?"), resolve())));

  const cleanUp = () => rm(dir, { recursive: true, force: true });
  const deadline = Date.now() + 15_000;
  while (!(await canConnect(port))) {
    if (state.exited !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      await cleanUp();
      throw new Error(`PgBouncer did not start (${state.exited !== null ? `exit ${state.exited}` : "not listening after 15 s"}):\n${log.join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    port,
    through(url: string) {
      const u = new URL(url);
      u.hostname = "127.0.0.1";
      u.port = String(port);
      return u.toString();
    },
    async stop() {
      if (state.exited === null) {
        // SIGTERM: immediate shutdown (SIGINT would wait for clients to leave).
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exit;
        clearTimeout(timer);
      }
      await cleanUp();
    },
  };
}

/**
 * Under `npm run test:pooled`: a pool logged in as the test database's
 * authenticator through the suite's PgBouncer (AUTHHUB_TEST_POOLER_URL, set by
 * test/pooled/pooler.setup.ts). Null otherwise.
 */
export function pooledAuthPool(db: Pick<TestDatabase, "authUrl">, options: { max: number; acquireTimeoutMs: number }): pg.Pool | null {
  const pooler = process.env.AUTHHUB_TEST_POOLER_URL;
  if (!pooler) return null;
  const url = new URL(db.authUrl);
  url.host = new URL(pooler).host;
  return makePool(url.toString(), { name: "test authenticator (pooled)", ...options });
}
