/**
 * One attempt to deliver one event (DESIGN.md §14): a POST signed as Standard
 * Webhooks (`webhook-id` the event id, the same on every retry;
 * `webhook-timestamp` the attempt's time; `webhook-signature: v1,<base64
 * HMAC-SHA256>` made by the `svix` package, which implements the
 * specification). The connection goes to the address address.ts checked, not
 * to a second DNS answer; a redirect is an answer like any other, never
 * followed; nothing of the answer is read but its status.
 */
// eslint-disable-next-line no-restricted-imports -- a client, not a server: fetch cannot pin the address the SSRF check approved
import http from "node:http";
// eslint-disable-next-line no-restricted-imports -- as above
import https from "node:https";
import type { LookupFunction } from "node:net";
import { Webhook } from "svix";
import { EventUrlRefused, resolveChecked } from "./address.js";

/** The longest an attempt may take, connection to status line. */
export const SEND_TIMEOUT_MS = 10_000;

export interface Attempt {
  /** The HTTP status, or null when there was no answer. */
  status: number | null;
  /** Why it failed (null for a 2xx). Safe to show the endpoint's admin. */
  error: string | null;
}

export interface Delivery {
  url: string;
  /** The endpoint's signing secret, whsec_…. */
  secret: string;
  eventId: string;
  /** The exact body to send (it is what is signed). */
  body: string;
}

export async function sendEvent(delivery: Delivery, options: { production: boolean; timeoutMs?: number }): Promise<Attempt> {
  const url = new URL(delivery.url);
  let checked;
  try {
    checked = await resolveChecked(url, options.production);
  } catch (err) {
    if (err instanceof EventUrlRefused) return { status: null, error: `Refused: ${err.message}` };
    throw err;
  }
  const timestamp = new Date();
  const signature = new Webhook(delivery.secret).sign(delivery.eventId, timestamp, delivery.body);
  // The checked address, whatever the resolver would answer now.
  const pinned: LookupFunction = (_host, opts, callback) => {
    if ((opts as { all?: boolean }).all) (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [checked]);
    else callback(null, checked.address, checked.family);
  };
  const client = url.protocol === "https:" ? https : http;
  const timeoutMs = options.timeoutMs ?? SEND_TIMEOUT_MS;
  return new Promise<Attempt>((resolve) => {
    let settled = false;
    const done = (a: Attempt) => {
      if (!settled) {
        settled = true;
        resolve(a);
      }
    };
    const req = client.request(
      url,
      {
        method: "POST",
        lookup: pinned,
        agent: false,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(delivery.body),
          "user-agent": "AuthHub-Webhooks/1",
          "webhook-id": delivery.eventId,
          "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
          "webhook-signature": signature,
        },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        // The body is not read: an endpoint streaming an endless one must not hold the worker.
        res.on("error", () => undefined);
        res.destroy();
        if (status >= 200 && status < 300) done({ status, error: null });
        else if (status >= 300 && status < 400) done({ status, error: `HTTP ${status}: redirects are not followed` });
        else done({ status, error: `HTTP ${status}` });
      },
    );
    // One deadline for the whole attempt (connection to status line); a socket idle timeout would only repeat it.
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on("error", (err) => done({ status: null, error: `${(err as { code?: string }).code ?? "error"}: ${err.message}`.slice(0, 300) }));
    req.on("close", () => {
      clearTimeout(timer);
      done({ status: null, error: "the connection closed without an answer" });
    });
    req.end(delivery.body);
  });
}
