/**
 * The layout of long conditions in db/schema/: operands one per line, precedence
 * kept visible, and nothing inside quotes, subqueries or CASE split.
 */
import { layoutCheck, layoutParenthesised } from "../../db/sqlLayout.js";

const long = (name: string) => `authhub_private.${name}(tenant_id, organization_id, 'a rather long literal argument')`;

test("a condition that fits stays on the policy's line", () => {
  expect(layoutParenthesised("  USING ", "tenant_id = authhub.current_tenant_id()", "  ")).toBe("  USING (tenant_id = authhub.current_tenant_id())");
});

test("OR operands go one per line, and an OR operand's ANDs one step further in", () => {
  const expr = `${long("a")} OR ${long("b")} AND (${long("c")} OR ${long("d")})`;
  expect(layoutParenthesised("  WITH CHECK ", expr, "  ").split("\n")).toEqual([
    "  WITH CHECK (",
    `    ${long("a")}`,
    `    OR ${long("b")}`,
    "      AND (",
    `        ${long("c")}`,
    `        OR ${long("d")}`,
    "      )",
    "  )",
  ]);
});

test("quotes, subqueries and brackets are not split; CASE goes one branch per line", () => {
  const literal = `'x AND y OR z ${"w".repeat(60)}'::text`;
  const sub = `(id IN ( SELECT f(a) AS f WHERE a AND b AND ${"c".repeat(60)}))`;
  const kase = `CASE WHEN organization_id IS NULL THEN ${long("e")} ELSE ${long("f")} END`;
  const laid = layoutParenthesised("  USING ", `name = ${literal} AND ${sub} AND ${kase} AND "odd AND name" = ARRAY[1 AND 2]`, "  ");
  expect(laid.split("\n")).toEqual([
    "  USING (",
    `    name = ${literal}`,
    `    AND ${sub}`,
    "    AND CASE",
    `      WHEN organization_id IS NULL THEN ${long("e")}`,
    `      ELSE ${long("f")}`,
    "    END",
    '    AND "odd AND name" = ARRAY[1 AND 2]',
    "  )",
  ]);
});

test("PostgreSQL's own line breaks (around CASE) are replaced, those inside literals kept", () => {
  const deparsed = `tenant_id = current_tenant_id() AND\nCASE\n    WHEN a THEN b\n    ELSE 'line one\nline two'\nEND`;
  expect(layoutParenthesised("  USING ", deparsed, "  ")).toBe("  USING (tenant_id = current_tenant_id() AND CASE WHEN a THEN b ELSE 'line one\nline two' END)");
  expect(layoutParenthesised("  WITH CHECK ", "\nCASE\n    WHEN a THEN b\n    ELSE c\nEND", "  ")).toBe("  WITH CHECK (CASE WHEN a THEN b ELSE c END)");
});

test("a CHECK keeps what follows its condition", () => {
  const expr = `length(VALUE) >= 1 AND length(VALUE) <= 200 AND VALUE !~ '[[:cntrl:]]'::text AND VALUE = btrim(VALUE)`;
  expect(layoutCheck("  CONSTRAINT display_text_format ", `CHECK (${expr}) NOT VALID`, "  ").split("\n")).toEqual([
    "  CONSTRAINT display_text_format CHECK (",
    "    length(VALUE) >= 1",
    "    AND length(VALUE) <= 200",
    "    AND VALUE !~ '[[:cntrl:]]'::text",
    "    AND VALUE = btrim(VALUE)",
    "  ) NOT VALID",
  ]);
});
