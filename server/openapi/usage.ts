/**
 * Per-key usage (last use, request count), added up in memory and recorded
 * about every 100 ms in one statement per server, so counting never makes a
 * key's concurrent requests wait on one database row. A crash forgets at most
 * the last interval's counts.
 */
import type pg from "pg";

export class ApiKeyUsage {
  private pending = new Map<string, { tenantId: string; count: number }>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly authPool: pg.Pool,
    private readonly intervalMs = 100,
  ) {}

  count(tenantId: string, apiKeyId: string): void {
    const entry = this.pending.get(apiKeyId);
    if (entry) entry.count++;
    else this.pending.set(apiKeyId, { tenantId, count: 1 });
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Records what is pending now (and waits for any recording under way). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = this.flushing.then(async () => {
      if (batch.size === 0) return;
      const entries = [...batch.entries()];
      await this.authPool
        .query("select authhub_private.record_api_key_usage($1, $2, $3, now())", [entries.map(([, e]) => e.tenantId), entries.map(([id]) => id), entries.map(([, e]) => e.count)])
        .catch(() => undefined);
    });
    return this.flushing;
  }
}
