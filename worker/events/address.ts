/**
 * Where events may be sent (DESIGN.md §14): https, and plain http only to a
 * loopback address outside production. In production no private, loopback,
 * link-local or otherwise non-public address is ever contacted (SSRF): a name
 * is resolved and every address it has is checked, and the request then goes
 * to the address that was checked (see send.ts), never to a second resolution.
 *
 * Shared by the server (an endpoint's URL is checked when it is registered) and
 * the worker (again at every attempt, since DNS answers change).
 */
import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";

/** Why an address or URL is refused; its message is safe to show the endpoint's admin. */
export class EventUrlRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EventUrlRefused";
  }
}

// Not reachable from the public internet, or not meant to be: RFC 6890's
// special-purpose registries, less the globally reachable entries.
const NOT_PUBLIC = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8], // "this network"
  ["10.0.0.0", 8], // private
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8], // loopback
  ["169.254.0.0", 16], // link-local (cloud metadata services live here)
  ["172.16.0.0", 12], // private
  ["192.0.0.0", 24], // IETF protocol assignments
  ["192.0.2.0", 24], // documentation
  ["192.88.99.0", 24], // 6to4 relay anycast
  ["192.168.0.0", 16], // private
  ["198.18.0.0", 15], // benchmarking
  ["198.51.100.0", 24], // documentation
  ["203.0.113.0", 24], // documentation
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const) {
  NOT_PUBLIC.addSubnet(net, bits, "ipv4");
}
for (const [net, bits] of [
  ["::", 96], // unspecified, loopback and the deprecated IPv4-compatible form (::a.b.c.d)
  ["64:ff9b::", 96], // NAT64: it would reach whatever IPv4 address it embeds
  ["64:ff9b:1::", 48], // local-use NAT64
  ["100::", 64], // discard
  ["2001::", 23], // IETF protocol assignments
  ["2001:db8::", 32], // documentation
  ["2002::", 16], // 6to4: it embeds an IPv4 address, private ones too
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["fec0::", 10], // site-local (deprecated)
  ["ff00::", 8], // multicast
] as const) {
  NOT_PUBLIC.addSubnet(net, bits, "ipv6");
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/**
 * An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is judged as the IPv4
 * address it is (BlockList does so for the hex form `::ffff:a00:1` too).
 */
function unmapped(address: string): { address: string; family: "ipv4" | "ipv6" } {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return { address: mapped[1]!, family: "ipv4" };
  return { address, family: isIP(address) === 6 ? "ipv6" : "ipv4" };
}

export function isPublicAddress(address: string): boolean {
  if (isIP(address) === 0) return false;
  const a = unmapped(address);
  return !NOT_PUBLIC.check(a.address, a.family);
}

export function isLoopbackAddress(address: string): boolean {
  if (isIP(address) === 0) return false;
  const a = unmapped(address);
  return LOOPBACK.check(a.address, a.family);
}

/** The host of a URL without IPv6 brackets. */
const hostOf = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, "$1");

/**
 * The URL rules that need no DNS: http(s) only, no credentials, https in
 * production, plain http only to a loopback host elsewhere (an address, or
 * `localhost`), and in production no literal non-public address.
 */
export function checkEventUrl(text: string, production: boolean): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new EventUrlRefused("The URL is not a valid absolute URL.");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new EventUrlRefused("Events are sent over https.");
  if (url.username !== "" || url.password !== "") throw new EventUrlRefused("The URL must not carry credentials.");
  if (url.hash !== "") throw new EventUrlRefused("The URL must not have a fragment.");
  const host = hostOf(url);
  if (url.protocol === "http:") {
    if (production) throw new EventUrlRefused("Events are sent over https in production.");
    if (!(host === "localhost" || isLoopbackAddress(host))) throw new EventUrlRefused("Plain http is allowed only to a loopback address (127.0.0.1, ::1, localhost).");
  }
  if (production && (host === "localhost" || (isIP(host) !== 0 && !isPublicAddress(host)))) {
    throw new EventUrlRefused("Events are not sent to private, loopback or link-local addresses.");
  }
  return url;
}

export interface CheckedAddress {
  address: string;
  family: 4 | 6;
}

/**
 * Resolves the URL's host and checks what it resolves to: in production every
 * address must be public; elsewhere, for plain http, every address must be
 * loopback. The answer is the address to connect to (the first one).
 */
export async function resolveChecked(url: URL, production: boolean): Promise<CheckedAddress> {
  const host = hostOf(url);
  let addresses: { address: string; family: number }[];
  if (isIP(host) !== 0) addresses = [{ address: host, family: isIP(host) }];
  else {
    try {
      addresses = await lookup(host, { all: true, verbatim: true });
    } catch (err) {
      throw new EventUrlRefused(`The host ${host} could not be resolved (${(err as { code?: string }).code ?? "error"}).`);
    }
  }
  if (addresses.length === 0) throw new EventUrlRefused(`The host ${host} has no address.`);
  if (production && addresses.some((a) => !isPublicAddress(a.address))) {
    throw new EventUrlRefused(`The host ${host} resolves to a private, loopback or link-local address; events are not sent there.`);
  }
  if (url.protocol === "http:" && addresses.some((a) => !isLoopbackAddress(a.address))) {
    throw new EventUrlRefused(`Plain http is allowed only to loopback, and ${host} resolves elsewhere.`);
  }
  const first = addresses[0]!;
  return { address: first.address, family: first.family === 6 ? 6 : 4 };
}
