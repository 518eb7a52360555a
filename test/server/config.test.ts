/**
 * Configuration is read once and refused early with a message naming the
 * variable (server/config.ts): here the Auth API's settings.
 */
import { ConfigError } from "../../db/configError.js";
import { readConfig } from "../../server/config.js";

const read = (env: Record<string, string>) => readConfig({ NODE_ENV: "test", ...env });

test("AUTHHUB_TRUST_PROXY: a small hop count or proxy subnets; nothing that would trust every client", () => {
  expect(read({}).trustProxy).toBe(false);
  expect(read({ AUTHHUB_TRUST_PROXY: "1" }).trustProxy).toBe(1);
  expect(read({ AUTHHUB_TRUST_PROXY: "loopback, 10.0.0.0/8, fd00::/16" }).trustProxy).toEqual(["loopback", "10.0.0.0/8", "fd00::/16"]);
  for (const bad of ["99", "0", "a", ":", "1.2.3.4/99", "0.0.0.0/0", "::/0", "true"]) {
    expect(() => read({ AUTHHUB_TRUST_PROXY: bad })).toThrow(ConfigError);
  }
});

test("AUTHHUB_TRUSTED_ISSUERS may not name an issuer twice; token lifetimes must nest", () => {
  const issuer = { issuer: "https://idp.example", jwksUri: "https://idp.example/jwks" };
  expect(() => read({ AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([issuer, issuer]) })).toThrow(/repeats/);
  expect(() => read({ AUTHHUB_REFRESH_TOKEN_TTL: "864000", AUTHHUB_SESSION_MAX_AGE: "86400" })).toThrow(/AUTHHUB_REFRESH_TOKEN_TTL/);
  expect(read({}).tokenRateLimit).toEqual({ perIp: 300, perSubject: 30 });
});

test("a trusted issuer may list authorized parties (azp) and a maximum token age; both are checked", () => {
  const base = { issuer: "https://clerk.acme.test", jwksUri: "https://clerk.acme.test/.well-known/jwks.json" };
  const issuers = (extra: Record<string, unknown>) => read({ AUTHHUB_TRUSTED_ISSUERS: JSON.stringify([{ ...base, ...extra }]) }).trustedIssuers;
  expect(issuers({})).toEqual([{ ...base, maxTokenAgeSeconds: 3600 }]);
  expect(issuers({ authorizedParties: ["https://app.acme.test"], maxTokenAgeSeconds: 300 })).toEqual([
    { ...base, authorizedParties: ["https://app.acme.test"], maxTokenAgeSeconds: 300 },
  ]);
  for (const bad of [[], "https://app.acme.test", [""], [42]]) {
    expect(() => issuers({ authorizedParties: bad })).toThrow(/AUTHHUB_TRUSTED_ISSUERS\[0\]\.authorizedParties/);
  }
  for (const bad of [0, 10, 1.5, "3600", 90_000]) {
    expect(() => issuers({ maxTokenAgeSeconds: bad })).toThrow(/AUTHHUB_TRUSTED_ISSUERS\[0\]\.maxTokenAgeSeconds/);
  }
});

test("an unknown AUTHHUB_* variable stops the start, naming it (and the setting it probably meant)", () => {
  expect(() => read({ AUTHHUB_ISSUR: "https://auth.example" })).toThrow(
    new ConfigError("AUTHHUB_ISSUR", "is not a setting AuthHub knows (did you mean AUTHHUB_ISSUER?); the README's Configuration table lists them all"),
  );
  expect(() => read({ AUTHHUB_NO_SUCH_THING: "1" })).toThrow(/Invalid configuration: AUTHHUB_NO_SUCH_THING is not a setting AuthHub knows;/);
  // Every documented setting is known; variables of the tools around AuthHub (the test suite's) and other programs' are left alone.
  expect(() => read({ AUTHHUB_TEST_ROOT_URL: "postgres://x", PGHOST: "localhost", AUTHHUB_METRICS_PORT: "9464" })).not.toThrow();
});

test("every AUTHHUB_* variable the README documents is one AuthHub reads", async () => {
  const { readFileSync } = await import("node:fs");
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const documented = [...new Set([...readme.matchAll(/^\| `(AUTHHUB_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]!))];
  expect(documented.length).toBeGreaterThan(30);
  const valid: Record<string, string> = { AUTHHUB_METRICS_TOKEN: "x".repeat(16), AUTHHUB_TRUSTED_ISSUERS: "[]", AUTHHUB_ISSUER: "https://auth.example" };
  for (const name of documented) {
    let error: unknown = null;
    try {
      read({ [name]: valid[name] ?? "" });
    } catch (err) {
      error = err;
    }
    expect(String(error)).not.toMatch(/is not a setting/);
  }
});

test("AUTHHUB_ISSUER is held to the rule of the issuer the database remembers: an http(s) URL of at most 500 characters", () => {
  expect(read({ AUTHHUB_ISSUER: "https://auth.example" }).issuer).toBe("https://auth.example");
  // URLs, but not ones `npx authhub issuer set` (server/auth/issuer.ts) would remember.
  for (const bad of ["urn:authhub", "ftp://auth.example", `https://auth.example/${"x".repeat(500)}`, "not a url"]) {
    expect(() => read({ AUTHHUB_ISSUER: bad })).toThrow(/AUTHHUB_ISSUER must be an http\(s\) URL/);
  }
});
