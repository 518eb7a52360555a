/**
 * A worker's connection to the hub as an API key (the pull connector's source
 * key, a bulk load's key): through the authenticator, each transaction opened
 * by begin_request with the key's settings, as a request of that key would be.
 */
import pg from "pg";
import { beginRequestStatement } from "../../db/claims.js";

export class KeySession {
  private constructor(
    private readonly client: pg.Client,
    private readonly settings: Record<string, string>,
  ) {}

  /** `settings`: pgSettingsForApiKey's, and any transaction setting the job adds. */
  static async open(authUrl: string, applicationName: string, settings: Record<string, string>): Promise<KeySession> {
    const client = new pg.Client({ connectionString: authUrl, application_name: applicationName });
    // A connection ended under us fails the query in flight, not the process.
    client.on("error", () => undefined);
    await client.connect();
    return new KeySession(client, settings);
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }

  /** One transaction as the key: committed when `fn` resolves, rolled back when it throws. */
  async tx<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    await this.client.query(beginRequestStatement(this.settings));
    try {
      const result = await fn(this.client);
      await this.client.query("commit");
      return result;
    } catch (err) {
      await this.client.query("rollback").catch(() => undefined);
      throw err;
    }
  }
}
