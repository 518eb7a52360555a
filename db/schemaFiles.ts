/**
 * db/schema/ on disk: read it, compare it with a fresh rendering, write one.
 * Every file there is generated, so writing removes what is no longer rendered.
 */
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type pg from "pg";
import type { SchemaFiles } from "./schemaDump.js";

/** Every file under `dir` (relative paths with "/"), or an empty map when it does not exist. */
export async function readSchemaFiles(dir: string): Promise<SchemaFiles> {
  const files: SchemaFiles = new Map();
  let entries: string[];
  try {
    entries = await readdir(dir, { recursive: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return files;
    throw err;
  }
  for (const entry of entries.sort()) {
    const full = path.join(dir, entry);
    try {
      files.set(entry.split(path.sep).join("/"), await readFile(full, "utf8"));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EISDIR") throw err;
    }
  }
  return files;
}

/**
 * PostgreSQL 15 qualifies every column in a view's body with its table
 * (`SELECT t.id FROM t`); 16 and later leave unambiguous columns bare
 * (`SELECT id FROM t`). Neither can be turned into the other from the text, so
 * db/schema/ holds the bodies as 16+ prints them, and on an older server the
 * comparison leaves view bodies out (everything else about a view still counts).
 */
export const VIEW_BODIES_FROM_VERSION = 160000;

const VIEW_BODY_OMITTED = "-- (the body is compared on PostgreSQL 16 and later only)";

/** `files` with the body of every CREATE VIEW / CREATE MATERIALIZED VIEW replaced by a note. */
export function withoutViewBodies(files: SchemaFiles): SchemaFiles {
  return new Map(
    [...files].map(([file, text]) => {
      if (!/^[^/]+\/views\//.test(file)) return [file, text];
      const lines = text.split("\n");
      const start = lines.findIndex((l) => /^CREATE (MATERIALIZED )?VIEW .* AS$/.test(l));
      const end = lines.findIndex((l, i) => i > start && l.endsWith(";"));
      if (start === -1 || end === -1) return [file, text];
      return [file, [...lines.slice(0, start + 1), VIEW_BODY_OMITTED, ...lines.slice(end + 1)].join("\n")];
    }),
  );
}

/** The server's version, to know whether view bodies can be compared (VIEW_BODIES_FROM_VERSION). */
export async function serverVersion(client: pg.ClientBase): Promise<number> {
  const { rows } = await client.query<{ v: number }>("select current_setting('server_version_num')::int as v");
  return rows[0]?.v ?? 0;
}

export interface SchemaFilesDiff {
  /** Rendered but not on disk. */
  missing: string[];
  /** On disk but no longer rendered. */
  stale: string[];
  /** On both, with other content. */
  changed: string[];
}

export function diffSchemaFiles(rendered: SchemaFiles, onDisk: SchemaFiles): SchemaFilesDiff {
  return {
    missing: [...rendered.keys()].filter((f) => !onDisk.has(f)),
    stale: [...onDisk.keys()].filter((f) => !rendered.has(f)),
    changed: [...rendered.keys()].filter((f) => onDisk.has(f) && onDisk.get(f) !== rendered.get(f)),
  };
}

export const isCurrent = (d: SchemaFilesDiff) => d.missing.length + d.stale.length + d.changed.length === 0;

/** Makes `dir` hold exactly `rendered`, touching only files that differ. */
export async function writeSchemaFiles(dir: string, rendered: SchemaFiles): Promise<SchemaFilesDiff> {
  const diff = diffSchemaFiles(rendered, await readSchemaFiles(dir));
  for (const file of [...diff.missing, ...diff.changed]) {
    const full = path.join(dir, ...file.split("/"));
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, rendered.get(file) ?? "");
  }
  for (const file of diff.stale) {
    await rm(path.join(dir, ...file.split("/")));
    // Drop directories the removal emptied (rmdir refuses non-empty ones).
    for (let d = path.dirname(path.join(dir, ...file.split("/"))); d !== dir && d.startsWith(dir); d = path.dirname(d)) {
      try {
        await rmdir(d);
      } catch {
        break;
      }
    }
  }
  return diff;
}

/** A message naming what differs, for the test and for `db:dump --check`. */
export function describeDiff(diff: SchemaFilesDiff, rendered: SchemaFiles, onDisk: SchemaFiles, dir = "db/schema"): string {
  const lines = [
    ...diff.changed.map((f) => `  changed: ${dir}/${f}`),
    ...diff.missing.map((f) => `  missing: ${dir}/${f}`),
    ...diff.stale.map((f) => `  no longer generated: ${dir}/${f}`),
  ];
  const first = diff.changed[0];
  if (first !== undefined) {
    const want = (rendered.get(first) ?? "").split("\n");
    const have = (onDisk.get(first) ?? "").split("\n");
    const index = want.findIndex((line, i) => line !== have[i]);
    const at = index === -1 ? want.length : index;
    const show = (text: string[]) => (at >= text.length - 1 && !text[at] ? "(end of file)" : (text[at] ?? "(end of file)"));
    lines.push(`  first difference, ${dir}/${first} line ${at + 1}:`, `    committed: ${show(have)}`, `    database:  ${show(want)}`);
  }
  return lines.join("\n");
}
