/** Runs a worker task once through graphile-worker itself, on a test database. */
import { Logger, makeWorkerUtils, runOnce } from "graphile-worker";
import pg from "pg";
import { tasks } from "../../worker/tasks/index.js";
import type { TestDatabase } from "./db.js";

export async function runTask(db: TestDatabase, identifier: string, payload: Record<string, unknown> = {}): Promise<void> {
  const owner = new pg.Pool({ connectionString: db.ownerUrl, max: 2 });
  owner.on("error", () => undefined);
  owner.on("connect", (c) => c.on("error", () => undefined));
  try {
    const logger = new Logger(() => () => undefined);
    const utils = await makeWorkerUtils({ pgPool: owner, logger });
    await utils.addJob(identifier, payload);
    await utils.release();
    await runOnce({ pgPool: owner, taskList: tasks, noHandleSignals: true, logger });
  } finally {
    await owner.end();
  }
}
