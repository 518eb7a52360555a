/** AuthHub Open API signing client (DESIGN.md §6). */
export interface SignRequestOptions {
  /** The key id, `ak_…`. */
  keyId: string;
  /** The secret, `sk_…`, as shown once at issue. */
  secret: string;
  method: string;
  /** Absolute, or a path with its query. */
  url: string;
  /** The exact body that will be sent. */
  body?: string | Uint8Array | null;
  /** Unix seconds; default now. */
  timestamp?: number;
  /** 16–64 characters of [A-Za-z0-9_-]; default a fresh random one. */
  nonce?: string;
}
export interface SignedHeaders {
  [header: string]: string;
  "X-Api-Key": string;
  "X-Timestamp": string;
  "X-Nonce": string;
  "X-Signature": string;
}
export function signRequest(options: SignRequestOptions): SignedHeaders;
export function canonicalQuery(rawQuery: string): string;
export function bodyHash(body?: string | Uint8Array | null): string;
export function canonicalString(parts: { method: string; path: string; query?: string; timestamp: number | string; nonce: string; bodySha256: string }): string;
export function signature(secret: string, canonical: string): string;
export function newNonce(): string;
