import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fchmodSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * The barrier: every secret pgbyok stores (private key material, token-signing keys) is sealed here with
 * AES-256-GCM under the vault master key, with the record's identity bound as associated data so a sealed
 * blob cannot be moved to another record. Format: [1-byte format version | 12-byte nonce | ciphertext | 16-byte tag].
 */
export interface Barrier {
  seal(plaintext: Buffer, aad: string): Buffer;
  unseal(sealed: Buffer, aad: string): Buffer;
  /** A 32-byte subkey for one purpose (audit HMAC, key backups), derived with HKDF-SHA256. */
  deriveKey(purpose: string, salt?: string): Buffer;
}

const FORMAT_V1 = 1;
const NONCE_LEN = 12;
const TAG_LEN = 16;

export class BarrierError extends Error {}

export function createBarrier(masterKey: Buffer): Barrier {
  if (masterKey.length !== 32) throw new BarrierError('the vault master key must be exactly 32 bytes');
  const key = Buffer.from(masterKey);
  return {
    seal(plaintext, aad) {
      const nonce = randomBytes(NONCE_LEN);
      const cipher = createCipheriv('aes-256-gcm', key, nonce);
      cipher.setAAD(Buffer.from(aad, 'utf8'));
      const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return Buffer.concat([Buffer.from([FORMAT_V1]), nonce, ct, cipher.getAuthTag()]);
    },
    unseal(sealed, aad) {
      if (sealed.length < 1 + NONCE_LEN + TAG_LEN || sealed[0] !== FORMAT_V1) {
        throw new BarrierError('sealed record has an unknown format');
      }
      const nonce = sealed.subarray(1, 1 + NONCE_LEN);
      const tag = sealed.subarray(sealed.length - TAG_LEN);
      const decipher = createDecipheriv('aes-256-gcm', key, nonce);
      decipher.setAAD(Buffer.from(aad, 'utf8'));
      decipher.setAuthTag(tag);
      try {
        return Buffer.concat([decipher.update(sealed.subarray(1 + NONCE_LEN, sealed.length - TAG_LEN)), decipher.final()]);
      } catch {
        throw new BarrierError('sealed record failed its integrity check (wrong master key or tampered data)');
      }
    },
    deriveKey(purpose, salt = '') {
      return Buffer.from(hkdfSync('sha256', key, Buffer.from(salt, 'utf8'), Buffer.from(`pgbyok/${purpose}`, 'utf8'), 32));
    },
  };
}

/**
 * The seal: where the master key comes from. `PGBYOK_MASTER_KEY` (base64 of 32 bytes) wins; otherwise a
 * 0600 file created at first start. The decoder is strict: anything but exactly 32 bytes is refused.
 */
export function loadOrCreateMasterKey(path: string, env = process.env): Buffer {
  const fromEnv = env.PGBYOK_MASTER_KEY;
  if (fromEnv) return decodeMasterKey(fromEnv, 'PGBYOK_MASTER_KEY');
  if (existsSync(path)) return decodeMasterKey(readFileSync(path, 'utf8'), path);
  const key = randomBytes(32);
  writeDurably(path, key.toString('base64') + '\n');
  return key;
}

/**
 * Temp file (0600), fsync, rename, fsync of the directory: once this returns the master key is on disk
 * under its name, so a power loss cannot keep data sealed under a key that was never persisted.
 */
function writeDurably(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function decodeMasterKey(text: string, source: string): Buffer {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/]{43}=$/.test(trimmed)) {
    throw new BarrierError(`${source} must hold the base64 of exactly 32 bytes (44 characters)`);
  }
  return Buffer.from(trimmed, 'base64');
}
