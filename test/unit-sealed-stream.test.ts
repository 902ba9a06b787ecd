/** The backup object format: round trip, and every kind of tampering refused. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CHUNK_SIZE, IntegrityError, openStream, sealStream } from '../src/backups/sealed-stream.js';

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of stream) out.push(c as Buffer);
  return Buffer.concat(out);
}

async function seal(key: Buffer, id: string, data: Buffer): Promise<Buffer> {
  // Feed in uneven pieces, as a real producer would.
  const pieces: Buffer[] = [];
  for (let i = 0; i < data.length; i += 300_001) pieces.push(data.subarray(i, i + 300_001));
  return collect(Readable.from(pieces).pipe(sealStream(key, id)));
}

async function open(key: Buffer, id: string, sealed: Buffer): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([sealed]), openStream(key, id), async function* (src) {
    for await (const c of src) out.push(c as Buffer);
  });
  return Buffer.concat(out);
}

const key = randomBytes(32);

test('round trip of empty, exact-chunk and multi-chunk objects', async () => {
  for (const size of [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3.5 * CHUNK_SIZE]) {
    const data = randomBytes(size);
    const sealed = await seal(key, 'obj-1', data);
    // A 32-byte run of the plaintext never shows in the ciphertext (shorter runs can occur by chance).
    if (size >= 32) assert.ok(!sealed.includes(data.subarray(0, 32)), `plaintext visible at size ${size}`);
    assert.deepEqual(await open(key, 'obj-1', sealed), data, `size ${size}`);
  }
});

test('a flipped byte, a truncation, reordered chunks, another object id or another key are refused', async () => {
  const data = randomBytes(2.5 * CHUNK_SIZE);
  const sealed = await seal(key, 'obj-2', data);
  const flipped = Buffer.from(sealed);
  flipped[Math.floor(sealed.length / 2)] ^= 0x01;
  await assert.rejects(open(key, 'obj-2', flipped), IntegrityError);
  await assert.rejects(open(key, 'obj-2', sealed.subarray(0, sealed.length - 100)), IntegrityError);
  // Drop the last chunk exactly: what is left ends on a chunk not marked last.
  const lastLen = 4 + 12 + (data.length - 2 * CHUNK_SIZE) + 16;
  await assert.rejects(open(key, 'obj-2', sealed.subarray(0, sealed.length - lastLen)), /truncated/);
  // Swap the first two chunks.
  const headerLen = 12 + sealed.readUInt32BE(8);
  const chunkLen = 4 + 12 + CHUNK_SIZE + 16;
  const a = sealed.subarray(headerLen, headerLen + chunkLen);
  const b = sealed.subarray(headerLen + chunkLen, headerLen + 2 * chunkLen);
  const swapped = Buffer.concat([sealed.subarray(0, headerLen), b, a, sealed.subarray(headerLen + 2 * chunkLen)]);
  await assert.rejects(open(key, 'obj-2', swapped), IntegrityError);
  await assert.rejects(open(key, 'other-object', sealed), IntegrityError);
  await assert.rejects(open(randomBytes(32), 'obj-2', sealed), IntegrityError);
});
