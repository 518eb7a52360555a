/**
 * Once per `npm run test:pooled`: the suite's cluster and template (as for
 * `npm test`), then one PgBouncer in transaction mode in front of it. Its
 * address goes to the test files as AUTHHUB_TEST_POOLER_URL; startTestServer
 * (test/helpers/server.ts) then gives every test server an authenticator pool
 * through it, with AUTHHUB_DB_POOLER=transaction, as an operator would deploy.
 * Fixtures, control queries and migrations stay direct.
 */
import clusterSetup from "../cluster.setup.js";
import { AUTHENTICATOR_ROLE, OWNER_ROLE } from "../../db/setup.js";
import { PGBOUNCER_MISSING, pgbouncerBinary, startPgBouncer, type PgBouncer } from "../helpers/pgbouncer.js";

declare global {
  var __authhubTestPooler: PgBouncer | undefined;
}

export default async function pooledSetup(): Promise<void> {
  await clusterSetup();
  if (!pgbouncerBinary()) {
    process.stderr.write(`\n${PGBOUNCER_MISSING}\n`);
    return;
  }
  const rootUrl = process.env.AUTHHUB_TEST_ROOT_URL!;
  const pooler = await startPgBouncer({
    serverUrl: rootUrl,
    users: [
      { name: AUTHENTICATOR_ROLE, password: process.env.AUTHHUB_TEST_AUTH_PASSWORD || null },
      { name: OWNER_ROLE, password: process.env.AUTHHUB_TEST_OWNER_PASSWORD || null },
    ],
    // Fewer server connections than the test servers' pools hold clients:
    // connections are shared between transactions, as in production.
    poolSize: 8,
    statsUsers: [AUTHENTICATOR_ROLE],
  });
  process.env.AUTHHUB_TEST_POOLER_URL = pooler.through(rootUrl);
  globalThis.__authhubTestPooler = pooler;
}
