/**
 * A local identity provider for tests: an HTTP server publishing a JWKS (the
 * stand-in for Clerk's), and a way to sign tokens as it would, or as an
 * attacker would (another key, another kid, another algorithm).
 */
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface LocalIdp {
  issuer: string;
  jwksUri: string;
  /** The published key's kid. */
  kid: string;
  publicJwk: JWK;
  /** How many times the JWKS was fetched. */
  fetches(): number;
  /** A token for `subject`, signed with the published key unless `key`/`alg` say otherwise. */
  sign(subject: string, options?: SignOptions): Promise<string>;
  close(): Promise<void>;
}

export interface SignOptions {
  /** null: no `aud` at all (as Clerk's default session tokens). */
  audience?: string | null;
  issuer?: string;
  /** Seconds since the epoch. */
  exp?: number;
  iat?: number;
  kid?: string;
  alg?: string;
  key?: CryptoKey | Uint8Array;
  claims?: Record<string, unknown>;
}

export async function startLocalIdp(options: { alg?: "RS256" | "ES256"; audience?: string } = {}): Promise<LocalIdp> {
  const alg = options.alg ?? "RS256";
  const pair = await generateKeyPair(alg, { extractable: true });
  const kid = "idp-key-1";
  const publicJwk: JWK = { ...(await exportJWK(pair.publicKey)), kid, alg, use: "sig" };
  let fetches = 0;
  const server = http.createServer((_req, res) => {
    fetches++;
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify({ keys: [publicJwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer,
    jwksUri: `${issuer}/.well-known/jwks.json`,
    kid,
    publicJwk,
    fetches: () => fetches,
    sign(subject, o = {}) {
      const now = Math.floor(Date.now() / 1000);
      const jwt = new SignJWT({ ...o.claims })
        .setProtectedHeader({ alg: o.alg ?? alg, kid: o.kid ?? kid })
        .setSubject(subject)
        .setIssuer(o.issuer ?? issuer);
      if (o.audience !== null) jwt.setAudience(o.audience ?? options.audience ?? "authhub");
      return jwt
        .setIssuedAt(o.iat ?? now - 10)
        .setExpirationTime(o.exp ?? now + 300)
        .sign(o.key ?? pair.privateKey);
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
