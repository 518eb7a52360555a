/**
 * The GraphQL schema PostGraphile builds from the retail tables' catalog (their
 * smart comments): built with the server's own preset from a migrated database,
 * without a warning, with the names DESIGN §12 gives. The relation to
 * retail.currencies is `currencyInfo`; it was `currency` too, which collided
 * with the column and made every schema build warn (migration 000015).
 */
import { jest } from "@jest/globals";
import { randomBytes } from "node:crypto";
import { makeSchema } from "postgraphile";
import { printSchema } from "postgraphile/graphql";
import { parseMasterKey } from "../../server/auth/masterKey.js";
import { readConfig } from "../../server/config.js";
import { makePreset } from "../../server/graphql/preset.js";
import { makeLogger } from "../../server/logger.js";
import { createTestDatabase, type TestDatabase } from "../helpers/db.js";

jest.setTimeout(120_000);

let db: TestDatabase;
let sdl: string;
const warnings: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  const config = readConfig({ NODE_ENV: "test", AUTHHUB_ISSUER: "http://authhub.test", LOG_LEVEL: "silent" });
  const spy = jest.spyOn(console, "warn").mockImplementation((...args: unknown[]) => {
    warnings.push(args.map(String).join(" "));
  });
  try {
    const { schema } = await makeSchema(makePreset(config, db.auth, makeLogger(config.logLevel), parseMasterKey(randomBytes(32).toString("base64"))));
    sdl = printSchema(schema);
  } finally {
    spy.mockRestore();
  }
});

afterAll(async () => {
  await db?.close();
});

/** The fields of an object type, as `name: Type` lines. */
function fields(type: string): string[] {
  const body = new RegExp(`\\ntype ${type} [^{]*\\{([\\s\\S]*?)\\n\\}`).exec(sdl)?.[1] ?? "";
  return body
    .split("\n")
    .map((l) => /^ {2}(\w+)(?:\([^)]*\))?: (.+)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `${m[1]}: ${m[2]}`);
}

test("the schema builds without a warning (no naming conflict)", () => {
  expect(warnings).toEqual([]);
});

test("a store's, variant's and order's currency is its ISO code; currencyInfo its row", () => {
  for (const type of ["Store", "Variant", "Order"]) {
    expect([type, fields(type)]).toEqual([type, expect.arrayContaining(["currency: String!", "currencyInfo: Currency"])]);
  }
  expect(fields("Currency")).toEqual(expect.arrayContaining(["code: String!", "minorUnits: Int!", "name: String!"]));
});

test("a product's synced variant list (the sync's bookkeeping) is not in the schema", () => {
  expect(fields("Product").length).toBeGreaterThan(5);
  expect(sdl).not.toMatch(/syncedVariants/);
});
