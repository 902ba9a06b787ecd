import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { errors } from '../lib/errors.js';
import { decodeB64url } from './key-input.js';
import type { KeyVersion, RotationPolicy } from './vault.types.js';

/**
 * The key backup blob: a plaintext header naming the format and the tenant, then every version of a key
 * (its private key as PKCS#8) under AES-256-GCM with the header as associated data, all base64url. The
 * key service supplies the per-tenant subkey of the master key, so a blob opens only in a vault of the
 * same tenant of the same installation; anything else reads as corrupt.
 */

export interface KeyBackupPayload {
  name: string;
  created: number;
  rotationPolicy?: RotationPolicy;
  versions: (Omit<KeyVersion, 'vaultId'> & { pkcs8: string })[];
}

export function sealKeyBackup(subkey: Buffer, tenantId: string, content: KeyBackupPayload): string {
  const header = Buffer.from(JSON.stringify({ format: 'pgbyok-key-backup', v: 1, tenantId }));
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', subkey, nonce);
  cipher.setAAD(header);
  const payload = Buffer.from(JSON.stringify(content));
  const ct = Buffer.concat([cipher.update(payload), cipher.final()]);
  payload.fill(0);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(header.length);
  return Buffer.concat([len, header, nonce, ct, cipher.getAuthTag()]).toString('base64url');
}

/** Opens a blob for a vault of `tenantId`; `subkeyFor` gives the tenant's subkey once the header checks out. */
export function openKeyBackup(blob: string, tenantId: string, subkeyFor: (tenantId: string) => Buffer): KeyBackupPayload {
  const raw = decodeB64url(blob, 'value');
  const corrupt = () => errors.badParameter('The backup blob is corrupt, was tampered with, or was not made by this installation.');
  if (raw.length < 2 + 12 + 16) throw corrupt();
  const hlen = raw.readUInt16BE(0);
  const headerBytes = raw.subarray(2, 2 + hlen);
  let header: { format?: string; v?: number; tenantId?: string } | null;
  try {
    header = JSON.parse(headerBytes.toString('utf8'));
  } catch {
    throw corrupt();
  }
  if (typeof header !== 'object' || header === null || header.format !== 'pgbyok-key-backup' || header.v !== 1 || typeof header.tenantId !== 'string') throw corrupt();
  if (header.tenantId !== tenantId) {
    throw errors.badParameter('This backup belongs to another tenant; a key backup restores only into a vault of the tenant it came from.', 'BackupFromOtherTenant');
  }
  const rest = raw.subarray(2 + hlen);
  try {
    const decipher = createDecipheriv('aes-256-gcm', subkeyFor(tenantId), rest.subarray(0, 12));
    decipher.setAAD(headerBytes);
    decipher.setAuthTag(rest.subarray(rest.length - 16));
    const plain = Buffer.concat([decipher.update(rest.subarray(12, rest.length - 16)), decipher.final()]);
    const payload = JSON.parse(plain.toString('utf8')) as KeyBackupPayload;
    plain.fill(0);
    return payload;
  } catch {
    throw corrupt();
  }
}
