/**
 * Only the RLS rows (bench/rls.ts) and, with BENCH_BREAKDOWN=1, the breakdown
 * (bench/breakdown.ts), on the same throwaway database `npm run bench` makes:
 * `npx tsx bench/rls-only.ts`. For measuring a policy change before and after
 * without the whole run.
 */
import "../server/env.js";
import { measureBreakdown, printBreakdown } from "./breakdown.js";
import { setUp } from "./context.js";
import { measureRls, prepareRls } from "./rls.js";
import { printRows } from "./stats.js";

async function main() {
  const ctx = await setUp();
  try {
    const subtree = await prepareRls(ctx);
    const rows = await measureRls(ctx, subtree);
    printRows(rows);
    if (process.env.BENCH_BREAKDOWN === "1") printBreakdown(await measureBreakdown(ctx, subtree));
  } finally {
    await ctx.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
