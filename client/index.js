// AuthHub Open API signing client (DESIGN.md §6). Plain ESM, Node's crypto only,
// so partners can use it as is: `import { signRequest } from "authhub/client"`.
// The server verifies with the same canonicalString(), so the two cannot drift.
import { createHash, createHmac, randomBytes } from "node:crypto";

const NONCE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/** The query string's canonical form: every `name=value` pair, each part percent-decoded then encoded as encodeURIComponent does, sorted by name then value, joined by `&`. */
export function canonicalQuery(rawQuery) {
  const query = rawQuery.startsWith("?") ? rawQuery.slice(1) : rawQuery;
  if (query === "") return "";
  const pairs = query
    .split("&")
    .filter((part) => part !== "")
    .map((part) => {
      const eq = part.indexOf("=");
      const name = eq === -1 ? part : part.slice(0, eq);
      const value = eq === -1 ? "" : part.slice(eq + 1);
      return [encodeURIComponent(decodeURIComponent(name)), encodeURIComponent(decodeURIComponent(value))];
    });
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([name, value]) => `${name}=${value}`).join("&");
}

/** Hex SHA-256 of the raw body (a string is taken as UTF-8; none is zero bytes). */
export function bodyHash(body) {
  return createHash("sha256")
    .update(body === undefined || body === null ? Buffer.alloc(0) : typeof body === "string" ? Buffer.from(body, "utf8") : Buffer.from(body))
    .digest("hex");
}

/** The string that is signed: `v1`, METHOD, path (as sent), canonical query, timestamp, nonce, body hash, joined by `\n`. */
export function canonicalString({ method, path, query, timestamp, nonce, bodySha256 }) {
  return ["v1", method.toUpperCase(), path, canonicalQuery(query ?? ""), String(timestamp), nonce, bodySha256].join("\n");
}

/** `v1=` + hex HMAC-SHA256 of the canonical string, keyed with the UTF-8 secret. */
export function signature(secret, canonical) {
  return `v1=${createHmac("sha256", Buffer.from(secret, "utf8")).update(canonical, "utf8").digest("hex")}`;
}

/** A nonce: 24 characters of [A-Za-z0-9_-]. */
export function newNonce() {
  return Array.from(randomBytes(24), (b) => NONCE_ALPHABET[b % 64]).join("");
}

/**
 * The four headers that authenticate one Open API request.
 * `url` is absolute or a path with its query (`/open/v1/users?limit=10`); `body`
 * is the exact body that will be sent (string or bytes), if any.
 */
export function signRequest({ keyId, secret, method, url, body, timestamp, nonce }) {
  const parsed = new URL(url, "http://placeholder");
  const ts = timestamp ?? Math.floor(Date.now() / 1000);
  const n = nonce ?? newNonce();
  const canonical = canonicalString({ method, path: parsed.pathname, query: parsed.search, timestamp: ts, nonce: n, bodySha256: bodyHash(body) });
  return { "X-Api-Key": keyId, "X-Timestamp": String(ts), "X-Nonce": n, "X-Signature": signature(secret, canonical) };
}
