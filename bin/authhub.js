#!/usr/bin/env node
// `npx authhub …`: npm puts this project's node_modules/.bin first on PATH, so
// `node` here is the pinned runtime (package `node`), not the system one.
import { register } from "tsx/esm/api";

register();
const { runCli } = await import("../server/cli.ts");
process.exitCode = await runCli(process.argv.slice(2));
