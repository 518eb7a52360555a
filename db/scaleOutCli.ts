/**
 * `npm run docs:scale-out`: migrates a throwaway database (as `npm run db:dump`
 * does) and writes docs/scale-out.md from its catalog, db/distribution.ts and
 * db/scaleOut.limits.md.
 *   --check   compare only; exit 1 when docs/scale-out.md is stale
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { withFreshDatabase } from "./freshDatabase.js";
import { renderScaleOutFrom, SCALE_OUT_DOC } from "./scaleOut.js";

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { check: { type: "boolean", default: false } } });
  const rendered = await withFreshDatabase("authhub-scale-out", renderScaleOutFrom);
  const committed = await readFile(SCALE_OUT_DOC, "utf8").catch(() => null);
  const shown = path.relative(process.cwd(), SCALE_OUT_DOC);
  if (committed === rendered) {
    process.stderr.write(`${shown}: current\n`);
    return 0;
  }
  if (values.check) {
    process.stderr.write(`${shown} is stale; run \`npm run docs:scale-out\`\n`);
    return 1;
  }
  await writeFile(SCALE_OUT_DOC, rendered);
  process.stderr.write(`${shown}: written\n`);
  return 0;
}

process.exitCode = await main();
