/**
 * The master key encrypts secrets at rest (signing keys now; API-key secrets and
 * webhook secrets later). AES-256-GCM; each ciphertext names the key version
 * that made it (`v1.<iv>.<tag>.<data>`, base64url), so the key can be rotated:
 *
 *   AUTHHUB_MASTER_KEY           the current key, `<version>:<32 bytes as base64 or hex>`
 *                                (version optional, default 1): encrypts and decrypts;
 *   AUTHHUB_MASTER_KEY_PREVIOUS  older keys, comma-separated in the same form:
 *                                decrypt only, until `npx authhub keys rewrap` has
 *                                re-encrypted everything under the current one.
 *
 * Outside production, a key is generated into the data directory on first use,
 * with a warning. `derive(purpose)` gives a separate 32-byte key per purpose
 * (HKDF-SHA256 of the current key), e.g. for refresh-token successors.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

export interface MasterKey {
  /** The version new ciphertexts are made with. */
  version: number;
  encrypt(plaintext: string): string;
  /** Decrypts under whichever configured version made the ciphertext. */
  decrypt(ciphertext: string): string;
  /** The version a ciphertext was made with, or null when it is not one of ours. */
  versionOf(ciphertext: string): number | null;
  derive(purpose: string): Buffer;
  /** The same, under every configured key: the current one first, then the previous ones. */
  deriveAll(purpose: string): Buffer[];
}

export class MasterKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MasterKeyError";
  }
}

interface VersionedKey {
  version: number;
  key: Buffer;
}

function parseOne(text: string, variable: string): VersionedKey {
  const match = /^(?:(\d{1,4}):)?([A-Za-z0-9+/_=-]+)$/.exec(text.trim());
  if (!match) throw new MasterKeyError(`${variable} must be 32 bytes as base64 or hex, optionally prefixed with \`<version>:\``);
  const version = match[1] ? Number(match[1]) : 1;
  const body = match[2]!;
  const key = /^[0-9a-fA-F]{64}$/.test(body) ? Buffer.from(body, "hex") : Buffer.from(body, "base64");
  if (key.length !== 32) throw new MasterKeyError(`${variable} must decode to 32 bytes (got ${key.length})`);
  return { version, key };
}

const aad = (version: number) => Buffer.from(`authhub:v${version}`);
const derive = (key: Buffer, purpose: string) => Buffer.from(hkdfSync("sha256", key, Buffer.alloc(0), `authhub:${purpose}`, 32));

/** The current key (`text`) and, optionally, previous ones for decryption only. */
export function parseMasterKey(text: string, previous: string | null = null): MasterKey {
  const current = parseOne(text, "AUTHHUB_MASTER_KEY");
  const ring = new Map<number, Buffer>([[current.version, current.key]]);
  for (const item of (previous ?? "").split(",").filter((s) => s.trim() !== "")) {
    const old = parseOne(item, "AUTHHUB_MASTER_KEY_PREVIOUS");
    const known = ring.get(old.version);
    if (known && !known.equals(old.key)) {
      throw new MasterKeyError(`Two different master keys claim version ${old.version}; give each key its own version`);
    }
    ring.set(old.version, old.key);
  }
  const versionOf = (ciphertext: string): number | null => {
    const m = /^v(\d{1,4})\./.exec(ciphertext);
    return m ? Number(m[1]) : null;
  };
  return {
    version: current.version,
    versionOf,
    encrypt(plaintext) {
      const iv = randomBytes(12);
      const cipher = createCipheriv("aes-256-gcm", current.key, iv);
      cipher.setAAD(aad(current.version));
      const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
      return [`v${current.version}`, iv, cipher.getAuthTag(), data].map((p) => (typeof p === "string" ? p : p.toString("base64url"))).join(".");
    },
    decrypt(ciphertext) {
      const parts = ciphertext.split(".");
      const version = versionOf(ciphertext);
      const key = version === null ? undefined : ring.get(version);
      if (parts.length !== 4 || version === null) throw new MasterKeyError("This is not a ciphertext made with a master key");
      if (!key) {
        throw new MasterKeyError(`This secret was encrypted under master key v${version}, which is not configured (AUTHHUB_MASTER_KEY_PREVIOUS?)`);
      }
      const [iv, tag, data] = parts.slice(1).map((p) => Buffer.from(p, "base64url")) as [Buffer, Buffer, Buffer];
      const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: 16 });
      decipher.setAAD(aad(version));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(data), decipher.final()]).toString("utf8");
    },
    derive(purpose) {
      return derive(current.key, purpose);
    },
    deriveAll(purpose) {
      return [current.key, ...[...ring.entries()].filter(([v]) => v !== current.version).map(([, key]) => key)].map((key) => derive(key, purpose));
    },
  };
}

/** The configured master key ring, or (outside production) one key kept in the data directory. */
export function loadMasterKey(configured: string | null, dataDir: string, env: string, warn: (msg: string) => void, previous: string | null = null): MasterKey {
  if (configured) return parseMasterKey(configured, previous);
  if (env === "production") throw new MasterKeyError("AUTHHUB_MASTER_KEY is required when NODE_ENV=production");
  const file = path.join(dataDir, "master.key");
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true, mode: 0o711 });
    writeFileSync(file, randomBytes(32).toString("base64") + "\n", { mode: 0o600 });
    warn(`Generated a development master key in ${file}. Set AUTHHUB_MASTER_KEY in production.`);
  }
  return parseMasterKey(readFileSync(file, "utf8"), previous);
}
