/**
 * `npm run test:pooled` (issue 15): the request-path suites again, with every
 * test server's authenticator pool going through a real PgBouncer in
 * transaction mode (test/pooled/pooler.setup.ts starts it; test/helpers/server.ts
 * routes through it), plus what only makes sense behind a pooler
 * (test/pooled/). Without a pgbouncer binary only test/pooled/ runs, and skips.
 */
import base from "./jest.config.js";
import { accessSync, constants } from "node:fs";
import path from "node:path";

const found = (file) => {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};
const hasPgBouncer = process.env.PGBOUNCER_BIN
  ? found(process.env.PGBOUNCER_BIN)
  : ["/usr/sbin", ...(process.env.PATH ?? "").split(path.delimiter)].some((dir) => dir && found(path.join(dir, "pgbouncer")));

// Every request surface: GraphQL (and its limits), the Open API and the Data
// Sync API, the Auth API, the decision API, the catalogue, the webhook receiver.
const throughThePooler = ["graphql", "graphql.limits", "openapi", "retail", "authApi", "authorize", "webhooks", "interleaving"].map(
  (name) => `<rootDir>/test/server/${name}.test.ts`,
);

export default {
  ...base,
  testMatch: ["<rootDir>/test/pooled/**/*.test.ts", ...(hasPgBouncer ? throughThePooler : [])],
  testPathIgnorePatterns: ["/node_modules/"],
  globalSetup: "<rootDir>/test/pooled/globalSetup.mjs",
  globalTeardown: "<rootDir>/test/pooled/globalTeardown.mjs",
};
