/**
 * jest in ESM mode with swc (see ../shared/STACK-NOTES.md): the suite migrates
 * one template database in globalSetup, and each test file clones it.
 */
export default {
  testEnvironment: "node",
  extensionsToTreatAsEsm: [".ts"],
  transform: {
    "^.+\\.ts$": ["@swc/jest", { jsc: { target: "es2023", parser: { syntax: "typescript" } }, module: { type: "es6" } }],
  },
  moduleNameMapper: { "^(\\.{1,2}/.*)\\.js$": "$1" },
  testMatch: ["<rootDir>/test/**/*.test.ts"],
  // test/pooled/ needs a PgBouncer: `npm run test:pooled` (jest.pooled.config.js).
  testPathIgnorePatterns: ["/node_modules/", "<rootDir>/test/pooled/"],
  globalSetup: "<rootDir>/test/globalSetup.mjs",
  globalTeardown: "<rootDir>/test/globalTeardown.mjs",
  maxWorkers: 2,
  testTimeout: 30000,
};
