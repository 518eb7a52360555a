/**
 * The OpenAPI 3.1 document, served at /open/v1/openapi.json, made from the
 * route table (resources.ts): every route, its parameters, body and answers,
 * the four signature headers as the security requirement, and the error shape.
 */
import { PAGE_SIZE } from "./resources.js";
import { routes, schemas } from "./routes.js";

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const error = (description: string) => ({ description, content: { "application/json": { schema: ref("Error") } } });

const SIGNING = `Every request carries four headers. \`X-Signature\` is \`v1=\` and the hex HMAC-SHA256, keyed with the UTF-8 secret, of these lines joined by \`\\n\`: \`v1\`, the method in upper case, the path as sent (still percent-encoded, no query), the query's \`name=value\` pairs each percent-encoded as encodeURIComponent does and sorted by name then value, joined by \`&\` (an empty line when there is none), \`X-Timestamp\`, \`X-Nonce\`, and the hex SHA-256 of the raw body (of zero bytes when there is none). Timestamps more than ${300} s away and nonces reused within that window are refused; every authentication failure is the same 401. See docs/open-api.md.`;

export function openApiDocument(serverUrl = "/open/v1"): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const parameters = [
      ...Object.entries(route.params ?? {}).map(([name, schema]) => ({ name, in: "path", required: true, schema })),
      ...Object.entries(route.query ?? {}).map(([name, schema]) => ({
        name,
        in: "query",
        required: false,
        schema: { type: schema.type, ...(schema.format ? { format: schema.format } : {}), ...(schema.pattern ? { pattern: schema.pattern } : {}) },
        ...(schema.description ? { description: schema.description } : {}),
      })),
    ];
    const answer = route.response.schema
      ? route.response.list
        ? {
            type: "object",
            required: ["data", "nextCursor"],
            properties: { data: { type: "array", items: ref(route.response.schema) }, nextCursor: { type: ["string", "null"] } },
          }
        : ref(route.response.schema)
      : null;
    const responses: Record<string, unknown> = {
      [route.response.status]: answer
        ? { description: route.response.list ? `A page (at most ${PAGE_SIZE.max}).` : "OK", headers: rateLimitHeaders, content: { "application/json": { schema: answer } } }
        : { description: "Done.", headers: rateLimitHeaders },
      400: error("invalid_input: `details` names the fields at fault."),
      401: error("unauthenticated: the signature, key, timestamp or nonce did not hold (one answer for all)."),
      403: error(route.scope ? `insufficient_scope: the key lacks \`${route.scope}\`; or forbidden: the row is visible but not to be changed by this key.` : "forbidden"),
      429: { ...error("rate_limited: over the key's or the tenant's limit."), headers: { ...rateLimitHeaders, "Retry-After": { schema: { type: "integer" } } } },
    };
    if (route.params) responses[404] = error("not_found: no such row visible to this key (another tenant's ids look the same).");
    if (route.method !== "get") responses[409] = error("conflict: a unique value is taken, or the row is still referenced.");
    (paths[route.path] ??= {})[route.method] = {
      operationId: route.operationId,
      summary: route.summary,
      tags: [route.tag],
      ...(route.scope ? { description: `Needs the scope \`${route.scope}\`.` } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(route.body ? { requestBody: { required: true, content: { "application/json": { schema: ref(route.body) } } } } : {}),
      responses,
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "AuthHub Open API",
      version: "1.0.0",
      description: `For partner systems: users, organizations and memberships of the key's tenant, under the key's scopes and limits.\n\n${SIGNING}`,
    },
    servers: [{ url: serverUrl }],
    security: [{ ApiKey: [], Timestamp: [], Nonce: [], Signature: [] }],
    tags: [{ name: "Key" }, { name: "Users" }, { name: "Organizations" }, { name: "Memberships" }],
    paths,
    components: {
      schemas,
      securitySchemes: {
        ApiKey: { type: "apiKey", in: "header", name: "X-Api-Key", description: "The key id, `ak_` and 22 base62 characters." },
        Timestamp: { type: "apiKey", in: "header", name: "X-Timestamp", description: "Unix seconds, within 300 s of the server's clock." },
        Nonce: { type: "apiKey", in: "header", name: "X-Nonce", description: "16-64 characters of [A-Za-z0-9_-], new for every request." },
        Signature: { type: "apiKey", in: "header", name: "X-Signature", description: SIGNING },
      },
    },
  };
}

const rateLimitHeaders = {
  "RateLimit-Limit": { schema: { type: "integer" }, description: "Requests allowed in the window." },
  "RateLimit-Remaining": { schema: { type: "integer" }, description: "Requests left in the window." },
  "RateLimit-Reset": { schema: { type: "integer" }, description: "Seconds until the window resets." },
};
