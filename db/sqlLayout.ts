/**
 * Lays out a condition deparsed by PostgreSQL (a policy's USING, a CHECK) over
 * several lines when it is long: one operand per line at its top-level OR, an
 * OR's operand split at its AND one step further in (so precedence stays
 * visible), parenthesised operands and CASE expressions laid out inside. Only
 * whitespace outside quotes changes, so the SQL means what PostgreSQL printed;
 * PostgreSQL's own line breaks (it breaks around CASE) are replaced by ours.
 */

const WIDTH = 100;

/** `expr` on one line when it fits after `indent`; else laid out, continuation lines starting with `indent`. */
export function layoutCondition(expr: string, indent: string): string {
  return layout(flatten(expr), indent);
}

/**
 * `lead` (the line up to its parenthesis, indentation included) and `(condition)`:
 * on that line when it fits, else the condition on lines of its own one step in.
 */
export function layoutParenthesised(lead: string, expr: string, indent: string): string {
  const flat = flatten(expr);
  if (lead.length + flat.length + 2 <= WIDTH) return `${lead}(${flat})`;
  return `${lead}(\n${indent}  ${layout(flat, `${indent}  `)}\n${indent})`;
}

/** `lead` and pg_get_constraintdef's `CHECK (…)[ NOT VALID]`, its condition laid out. */
export function layoutCheck(lead: string, definition: string, indent: string): string {
  const body = definition.slice("CHECK ".length);
  const closing = closingParenthesis(body);
  if (!definition.startsWith("CHECK (") || closing === -1) return `${lead}${definition}`;
  return `${layoutParenthesised(`${lead}CHECK `, body.slice(1, closing), indent)}${body.slice(closing + 1)}`;
}

function layout(expr: string, indent: string): string {
  if (indent.length + expr.length <= WIDTH) return expr;
  const ors = splitAt(expr, "OR");
  if (ors.length === 1) return layoutAnds(expr, indent);
  return ors
    .map((operand, i) => {
      const laid = splitAt(operand, "AND").length > 1 ? layoutAnds(operand, `${indent}  `) : layoutOperand(operand, indent);
      return (i === 0 ? "" : `\n${indent}OR `) + laid;
    })
    .join("");
}

/** An operand of OR, or a condition without OR: one AND per line. */
function layoutAnds(expr: string, indent: string): string {
  if (indent.length + expr.length <= WIDTH) return expr;
  return splitAt(expr, "AND")
    .map((operand, i) => (i === 0 ? "" : `\n${indent}AND `) + layoutOperand(operand, indent))
    .join("");
}

/**
 * An operand with no top-level AND or OR: when long, a parenthesised AND/OR
 * (or NOT of one) and a CASE are laid out inside; a subquery is left as printed.
 */
function layoutOperand(operand: string, indent: string): string {
  if (indent.length + operand.length <= WIDTH) return operand;
  const not = operand.startsWith("NOT (") ? "NOT " : "";
  const rest = operand.slice(not.length);
  const inner = rest.slice(1, -1);
  if (
    rest.startsWith("(") &&
    closingParenthesis(rest) === rest.length - 1 &&
    !/^\s*(SELECT|WITH|VALUES)\b/.test(inner) &&
    (splitAt(inner, "OR").length > 1 || splitAt(inner, "AND").length > 1)
  ) {
    return `${not}(\n${indent}  ${layout(inner, `${indent}  `)}\n${indent})`;
  }
  if (operand.startsWith("CASE ") && operand.endsWith(" END")) return layoutCase(operand, indent);
  return operand;
}

/** CASE with each WHEN and ELSE on a line of its own. */
function layoutCase(expr: string, indent: string): string {
  const cuts = spaces(expr)
    .filter((s) => s.depth === 0 && s.cases === 1 && /^ (WHEN|ELSE|END)\b/.test(expr.slice(s.at)))
    .map((s) => s.at);
  let out = "";
  let from = 0;
  for (const at of cuts) {
    out += `${expr.slice(from, at)}\n${indent}${expr.startsWith(" END", at) ? "" : "  "}`;
    from = at + 1;
  }
  return out + expr.slice(from);
}

/** `text` split at ` OP ` outside parentheses, brackets, CASE…END and quotes. */
function splitAt(text: string, op: "AND" | "OR"): string[] {
  const parts: string[] = [];
  let from = 0;
  for (const s of spaces(text)) {
    if (s.depth === 0 && s.cases === 0 && s.at >= from && text.startsWith(` ${op} `, s.at)) {
      parts.push(text.slice(from, s.at));
      from = s.at + op.length + 2;
    }
  }
  parts.push(text.slice(from));
  return parts;
}

/** Where the parenthesis opening `text` closes, or -1. */
function closingParenthesis(text: string): number {
  let found = -1;
  walk(text, (i, ch, depth) => {
    if (found === -1 && ch === ")" && depth === 0) found = i;
  });
  return text.startsWith("(") ? found : -1;
}

/** The spaces outside quotes, with their parenthesis depth and CASE nesting. */
function spaces(text: string): { at: number; depth: number; cases: number }[] {
  const found: { at: number; depth: number; cases: number }[] = [];
  walk(text, (at, ch, depth, cases) => {
    if (ch === " ") found.push({ at, depth, cases });
  });
  return found;
}

/** PostgreSQL's line breaks and the indentation after them, outside quotes, become one space (none inside parentheses' edges). */
function flatten(text: string): string {
  let out = "";
  let last = 0;
  walk(text, (at, ch) => {
    if (ch !== "\n") return;
    out += text.slice(last, at).trimEnd();
    last = at + 1;
    while (text[last] === " " || text[last] === "\t") last++;
    if (out !== "" && !out.endsWith("(") && text[last] !== ")") out += " ";
  });
  return (out + text.slice(last)).trim();
}

/**
 * Calls `visit` for every character outside literals and quoted identifiers,
 * with the parenthesis depth after it and how many CASEs enclose it (CASE and
 * END counted at depth 0 only).
 */
function walk(text: string, visit: (at: number, ch: string, depth: number, cases: number) => void): void {
  let depth = 0;
  let cases = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] ?? "";
    if (ch === "'" || ch === '"') {
      // E'…' escapes with backslashes; a doubled quote stays inside.
      const escapes = ch === "'" && /(^|[^A-Za-z0-9_])[Ee]$/.test(text.slice(Math.max(0, i - 2), i));
      for (i++; i < text.length; i++) {
        if (escapes && text[i] === "\\") i++;
        else if (text[i] === ch) {
          if (text[i + 1] === ch) i++;
          else break;
        }
      }
      continue;
    }
    if (/[A-Za-z_]/.test(ch) && !/[A-Za-z0-9_$]/.test(text[i - 1] ?? "")) {
      const word = /^[A-Za-z_][A-Za-z0-9_$]*/.exec(text.slice(i))?.[0] ?? ch;
      if (depth === 0 && word === "CASE") cases++;
      if (depth === 0 && word === "END" && cases > 0) cases--;
      i += word.length - 1;
      continue;
    }
    if (ch === "(" || ch === "[") depth++;
    if (ch === ")" || ch === "]") depth--;
    visit(i, ch, depth, cases);
  }
}
