/**
 * The master key encrypts secrets at rest (signing keys now; API-key secrets and
 * webhook secrets later). AES-256-GCM; each ciphertext names the key version
 * that made it (`v1.<iv>.<tag>.<data>`, base64url), so the key can be rotated.
 *
 * AUTHHUB_MASTER_KEY is 32 random bytes as base64 or hex, optionally prefixed
 * with its version (`2:…`, default 1). Outside production, a key is generated
 * into the data directory on first use, with a warning.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

export interface MasterKey {
  version: number;
  encrypt(plaintext: string): string;
  decrypt(ciphertext: string): string;
}

export class MasterKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MasterKeyError";
  }
}

export function parseMasterKey(text: string): MasterKey {
  const match = /^(?:(\d{1,4}):)?([A-Za-z0-9+/_=-]+)$/.exec(text.trim());
  if (!match) throw new MasterKeyError("AUTHHUB_MASTER_KEY must be 32 bytes as base64 or hex, optionally prefixed with `<version>:`");
  const version = match[1] ? Number(match[1]) : 1;
  const body = match[2]!;
  const bytes = /^[0-9a-fA-F]{64}$/.test(body) ? Buffer.from(body, "hex") : Buffer.from(body, "base64");
  if (bytes.length !== 32) throw new MasterKeyError(`AUTHHUB_MASTER_KEY must decode to 32 bytes (got ${bytes.length})`);
  return makeMasterKey(version, bytes);
}

function makeMasterKey(version: number, key: Buffer): MasterKey {
  return {
    version,
    encrypt(plaintext) {
      const iv = randomBytes(12);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      cipher.setAAD(Buffer.from(`authhub:v${version}`));
      const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
      return [`v${version}`, iv, cipher.getAuthTag(), data].map((p) => (typeof p === "string" ? p : p.toString("base64url"))).join(".");
    },
    decrypt(ciphertext) {
      const parts = ciphertext.split(".");
      if (parts.length !== 4 || parts[0] !== `v${version}`) {
        throw new MasterKeyError(`This secret was encrypted under master key ${parts[0] ?? "?"}, not v${version}`);
      }
      const [iv, tag, data] = parts.slice(1).map((p) => Buffer.from(p, "base64url")) as [Buffer, Buffer, Buffer];
      const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: 16 });
      decipher.setAAD(Buffer.from(`authhub:v${version}`));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(data), decipher.final()]).toString("utf8");
    },
  };
}

/** The configured master key, or (outside production) one kept in the data directory. */
export function loadMasterKey(
  configured: string | null,
  dataDir: string,
  env: string,
  warn: (msg: string) => void,
): MasterKey {
  if (configured) return parseMasterKey(configured);
  if (env === "production") throw new MasterKeyError("AUTHHUB_MASTER_KEY is required when NODE_ENV=production");
  const file = path.join(dataDir, "master.key");
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true, mode: 0o711 });
    writeFileSync(file, randomBytes(32).toString("base64") + "\n", { mode: 0o600 });
    warn(`Generated a development master key in ${file}. Set AUTHHUB_MASTER_KEY in production.`);
  }
  return parseMasterKey(readFileSync(file, "utf8"));
}
