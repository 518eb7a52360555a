/**
 * docs/open-api.md's curl + openssl script, run as written against a real
 * listening server with a real key: the example partners copy must work.
 * (Needs bash, curl and openssl on the machine, as the example does.)
 */
import { execFile, execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { issueApiKey } from "../../server/openapi/issue.js";
import type { TestDatabase } from "../helpers/db.js";
import type { Fixtures } from "../helpers/fixtures.js";
import { useFixtureServer, type TestServer } from "../helpers/server.js";

let db: TestDatabase;
let f: Fixtures;
let srv: TestServer;
useFixtureServer((database, fixtures, server) => {
  db = database;
  f = fixtures;
  srv = server;
});

const tools = ["bash", "curl", "openssl"].every((tool) => {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
});

(tools ? test : test.skip)("the curl + openssl example lists users and creates one", async () => {
  const doc = readFileSync(path.join(import.meta.dirname, "../../docs/open-api.md"), "utf8");
  const script = /<!-- tested:[^>]*-->\s*```bash\n([\s\S]*?)```/.exec(doc)?.[1];
  expect(script).toBeDefined();
  const file = path.join(os.tmpdir(), `authhub-open-api-${process.pid}.sh`);
  writeFileSync(file, script!);
  const key = await issueApiKey(db.owner, srv.masterKey, { name: "curl", scopes: ["user:read", "user:write"], tenantId: f.a.id });
  await new Promise<void>((resolve) => srv.server.listen(0, "127.0.0.1", resolve));
  try {
    const base = `http://127.0.0.1:${(srv.server.address() as AddressInfo).port}`;
    const out = await new Promise<string>((resolve, reject) =>
      execFile("bash", [file], { env: { ...process.env, KEY_ID: key.keyId, SECRET: key.secret, BASE: base } }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const [list, created] = out
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(list.data).toHaveLength(2);
    expect(created).toMatchObject({ email: "curl-example@example.com", displayName: "From curl", level: "USER" });
  } finally {
    await new Promise((resolve) => srv.server.close(resolve));
    rmSync(file, { force: true });
  }
});
