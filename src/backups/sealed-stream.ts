import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * The format of every object in a backup store: authenticated encryption (AES-256-GCM from node:crypto)
 * in chunks, so objects of any size stream through in bounded memory.
 *
 *   header:  "PGBYOKB1" | u32 length | JSON {objectId}          (plaintext, authenticated by every chunk)
 *   chunk:   u32 plaintext length | 12-byte nonce | ciphertext | 16-byte tag
 *   AAD of a chunk: objectId | chunk index | last-chunk flag
 *
 * The index binds the order, the flag makes truncation detectable (the stream must end with a chunk
 * marked last), and the object id keeps a chunk from being moved into another object. Any change to
 * any byte fails decryption with an IntegrityError.
 */

const MAGIC = Buffer.from('PGBYOKB1');
export const CHUNK_SIZE = 1024 * 1024;

export class IntegrityError extends Error {
  constructor(message: string) {
    super(`backup integrity check failed: ${message}`);
  }
}

function aad(objectId: string, index: number, last: boolean): Buffer {
  const b = Buffer.alloc(9);
  b.writeBigUInt64BE(BigInt(index), 0);
  b.writeUInt8(last ? 1 : 0, 8);
  return Buffer.concat([Buffer.from(objectId, 'utf8'), b]);
}

/** Encrypts a stream under a 32-byte key. */
export function sealStream(key: Buffer, objectId: string): Transform {
  if (key.length !== 32) throw new Error('backup keys are 32 bytes');
  let pending = Buffer.alloc(0);
  let index = 0;
  let headerSent = false;
  const header = () => {
    const meta = Buffer.from(JSON.stringify({ objectId }));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(meta.length);
    return Buffer.concat([MAGIC, len, meta]);
  };
  const seal = (plain: Buffer, last: boolean): Buffer => {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    cipher.setAAD(aad(objectId, index++, last));
    const ct = Buffer.concat([cipher.update(plain), cipher.final()]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(plain.length);
    return Buffer.concat([len, nonce, ct, cipher.getAuthTag()]);
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (!headerSent) {
        this.push(header());
        headerSent = true;
      }
      pending = Buffer.concat([pending, chunk]);
      // Keep at least one full chunk back, so the last one can be marked when the input ends.
      while (pending.length > CHUNK_SIZE) {
        this.push(seal(pending.subarray(0, CHUNK_SIZE), false));
        pending = pending.subarray(CHUNK_SIZE);
      }
      cb();
    },
    flush(cb: TransformCallback) {
      if (!headerSent) this.push(header());
      this.push(seal(pending, true));
      pending = Buffer.alloc(0);
      cb();
    },
  });
}

/** Decrypts what `sealStream` produced; fails (and emits nothing more) at the first altered byte. */
export function openStream(key: Buffer, expectedObjectId: string): Transform {
  let buf = Buffer.alloc(0);
  let index = 0;
  let headerRead = false;
  let ended = false;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      buf = Buffer.concat([buf, chunk]);
      try {
        if (!headerRead) {
          if (buf.length < 12) return cb();
          if (!buf.subarray(0, 8).equals(MAGIC)) throw new IntegrityError('not a pgbyok backup object');
          const len = buf.readUInt32BE(8);
          if (len > 4096) throw new IntegrityError('header too large');
          if (buf.length < 12 + len) return cb();
          const meta = JSON.parse(buf.subarray(12, 12 + len).toString('utf8')) as { objectId?: string };
          if (meta.objectId !== expectedObjectId) throw new IntegrityError(`object ${meta.objectId} is not ${expectedObjectId}`);
          buf = buf.subarray(12 + len);
          headerRead = true;
        }
        while (buf.length >= 4) {
          if (ended) throw new IntegrityError('data after the last chunk');
          const plainLen = buf.readUInt32BE(0);
          if (plainLen > CHUNK_SIZE) throw new IntegrityError('chunk too large');
          const total = 4 + 12 + plainLen + 16;
          if (buf.length < total) break;
          const nonce = buf.subarray(4, 16);
          const ct = buf.subarray(16, 16 + plainLen);
          const tag = buf.subarray(16 + plainLen, total);
          // Try "not last" first; only the final chunk of the stream authenticates as last.
          let plain: Buffer | undefined;
          for (const last of [false, true]) {
            try {
              const d = createDecipheriv('aes-256-gcm', key, nonce);
              d.setAAD(aad(expectedObjectId, index, last));
              d.setAuthTag(tag);
              plain = Buffer.concat([d.update(ct), d.final()]);
              ended = last;
              break;
            } catch {
              plain = undefined;
            }
          }
          if (!plain) throw new IntegrityError(`chunk ${index} was altered, moved or belongs elsewhere`);
          index++;
          buf = buf.subarray(total);
          this.push(plain);
        }
        cb();
      } catch (e) {
        cb(e instanceof IntegrityError ? e : new IntegrityError((e as Error).message));
      }
    },
    flush(cb: TransformCallback) {
      if (!headerRead || !ended || buf.length) return cb(new IntegrityError('the object is truncated'));
      cb();
    },
  });
}
