/** Trace ids: accepted from X-Trace-Id when well-formed, otherwise generated. */
import { randomBytes } from "node:crypto";

const TRACE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$/;

export function traceIdFrom(header: string | undefined): string | null {
  return header !== undefined && TRACE_ID.test(header) ? header : null;
}

export function newTraceId(): string {
  return randomBytes(16).toString("hex");
}
