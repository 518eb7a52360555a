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
