/**
 * db/schema/ on disk: read it, compare it with a fresh rendering, write one.
 * Every file there is generated, so writing removes what is no longer rendered.
 */
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
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
