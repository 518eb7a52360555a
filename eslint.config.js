// @ts-check
/**
 * `npm run lint` (with `prettier --check .`; formatting is Prettier's alone,
 * prettier.config.js). ESLint with typescript-eslint rather than Biome: its
 * type-aware rules (a promise nobody awaits in an express handler, a worker task
 * or a shutdown step; an `any` leaking out of a query result) are the findings
 * that matter in this codebase, and Biome's linter has no type information.
 *
 * The layering (docs/conventions.md): db/ is the bottom layer (server/ and
 * worker/ both build on it, never the other way round); the worker never loads
 * HTTP code, so a job runner does not drag express, PostGraphile or a router in.
 */
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import globals from "globals";
import tseslint from "typescript-eslint";

/** Relative imports of a top-level folder, from any depth (`../server/x.js`, `../../server/x.js`). */
const into = (folders) => `^(\\.\\./)+(${folders})/`;

export default defineConfig(
  {
    ignores: ["node_modules/", "bench/results/", "migrations/", ".authhub/", "scratch/", "coverage/", "db/schema/"],
  },
  {
    linterOptions: { reportUnusedDisableDirectives: "error" },
  },
  js.configs.recommended,
  {
    files: ["**/*.ts"],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // `_name` marks a parameter kept for its position: express tells an error handler by
      // its four parameters, and a destructured `_replaced` is what `...rest` leaves out.
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrorsIgnorePattern: "^_", ignoreRestSiblings: true }],
      // STYLE.md: `import type` for what is only a type (swc erases per file and cannot tell).
      "@typescript-eslint/consistent-type-imports": ["error", { prefer: "type-imports", fixStyle: "inline-type-imports" }],
      eqeqeq: ["error", "always", { null: "ignore" }],
      // Off: an `async` function without `await` is how this code meets a Promise-returning
      // contract (a CLI command, a shutdown step, a worker task, a row of async test cases)
      // while a throw still becomes a rejection; Promise.resolve() rewrites would lose that.
      "@typescript-eslint/require-await": "off",
    },
  },
  {
    // Tests read response bodies (supertest types every `body` as `any`) and JSON.parse results
    // straight into expect(), which checks them; a cast at each of ~570 reads would add noise,
    // not safety. `any` written by hand is still an error (no-explicit-any stays on).
    files: ["test/**"],
    rules: {
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-return": "off",
    },
  },
  {
    // Production code logs through server/logger.ts (JSON lines); the CLI prints through its `out`.
    files: ["server/**", "worker/**", "db/**"],
    rules: { "no-console": "error" },
  },
  {
    // Plain ESM run by Node (the CLI shim, the published client, jest's setup and these configs).
    files: ["**/*.js", "**/*.mjs"],
    languageOptions: { globals: globals.node },
  },
  {
    files: ["db/**"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { regex: into("server|worker|bench|test"), message: "db/ is the bottom layer: move what both need into db/ (or pass it in) instead of importing from above." },
          ],
        },
      ],
    },
  },
  {
    files: ["worker/**"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          paths: [
            { name: "express", message: "The worker does not load HTTP code." },
            { name: "supertest", message: "The worker does not load HTTP code." },
            { name: "node:http", message: "The worker does not serve HTTP (fetch is enough for Clerk's API)." },
            { name: "node:https", message: "The worker does not serve HTTP (fetch is enough for Clerk's API)." },
          ],
          patterns: [
            { regex: "^(postgraphile|grafserv|grafast)(/|$)", message: "The worker does not load the GraphQL server." },
            // Only the process-level modules the worker shares with the server: everything
            // else under server/ is a router, a GraphQL plugin or request handling. (metrics:
            // the process's counters and their loopback exposition, no request handling.)
            {
              regex: `${into("server")}(?!(env|config|logger|shutdown|metrics|auth/masterKey)\\.js$)`,
              message:
                "The worker may use server/{env,config,logger,shutdown,metrics,auth/masterKey} only: move what it needs out of HTTP modules (to db/ or a module without express).",
            },
            { regex: into("bench|test"), message: "Production code does not import benchmarks or tests." },
          ],
        },
      ],
    },
  },
  {
    files: ["server/**"],
    rules: {
      "no-restricted-imports": ["error", { patterns: [{ regex: into("bench|test"), message: "Production code does not import benchmarks or tests." }] }],
    },
  },
);
