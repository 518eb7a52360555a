/**
 * What the server learns about a request before handing it on: its trace id and
 * the authenticated identity (null: anonymous). Kept beside the request object,
 * so every layer (GraphQL context, logs, REST handlers) reads the same thing.
 */
import type { IncomingMessage } from "node:http";
import type { ApiKeyIdentity, Identity } from "../db/claims.js";

export interface RequestState {
  traceId: string;
  identity: Identity | null;
  /** An API key calling with a client-credentials access token (then identity is null). */
  apiKey: ApiKeyIdentity | null;
  /** How the identity was established, for logs. */
  via: "anonymous" | "bearer" | "gateway" | "api_key";
  /** A GraphQL request failed because the database could not be reached: answered 503 with Retry-After. */
  unavailable?: boolean;
}

const states = new WeakMap<IncomingMessage, RequestState>();

export function requestState(req: IncomingMessage): RequestState {
  let state = states.get(req);
  if (!state) {
    state = { traceId: "", identity: null, apiKey: null, via: "anonymous" };
    states.set(req, state);
  }
  return state;
}
