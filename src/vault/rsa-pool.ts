import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import { ApiError } from '../lib/errors.js';
import type { EncryptionAlg, SignatureAlg } from './rsa.js';

/**
 * RSA private-key operations (decrypt/unwrap, sign) on worker threads. They are the one expensive step of a
 * vault request (about half a millisecond each for RSA-2048 here), and the platform's event loop must keep
 * serving TLS, tokens and audit meanwhile. The workers run the same `rsa.ts` functions; keys travel as
 * KeyObjects (cloned to the worker in memory, never serialized to bytes we handle).
 */

export type PrivateJob =
  | { op: 'decrypt'; key: KeyObject; alg: EncryptionAlg; value: Buffer; modulusBytes: number }
  | { op: 'sign'; key: KeyObject; alg: SignatureAlg; value: Buffer };

/** What a worker answers: the result, or an API error (already generic where it must be, see rsa.decrypt). */
export type WorkerReply = { id: number; out: Uint8Array } | { id: number; error: { status: number; code: string; message: string; innerCode?: string } };

export interface RsaPool {
  run(job: PrivateJob): Promise<Buffer>;
  close(): Promise<void>;
}

interface Slot {
  worker: Worker;
  pending: Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>;
}

const WORKER_URL = new URL('./rsa-worker.js', import.meta.url);

export function createRsaPool(size = Math.max(1, Math.min(availableParallelism(), 8))): RsaPool {
  let nextId = 1;
  let closing = false;
  const slots: Slot[] = [];

  const spawnSlot = (index: number): Slot => {
    const slot: Slot = { worker: new Worker(WORKER_URL), pending: new Map() };
    slot.worker.unref();
    slot.worker.on('message', (m: WorkerReply) => {
      const p = slot.pending.get(m.id);
      if (!p) return;
      slot.pending.delete(m.id);
      if ('out' in m) p.resolve(Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength));
      else p.reject(new ApiError(m.error.status, m.error.code, m.error.message, m.error.innerCode));
    });
    // A worker that dies fails only its own requests; a fresh one takes its place.
    const fail = (why: string) => {
      for (const p of slot.pending.values()) p.reject(new Error(`the RSA worker stopped: ${why}`));
      slot.pending.clear();
      if (!closing && slots[index] === slot) slots[index] = spawnSlot(index);
    };
    slot.worker.on('error', (e) => fail(String(e)));
    slot.worker.on('exit', (code) => fail(`exit code ${code}`));
    return slot;
  };
  for (let i = 0; i < size; i++) slots.push(spawnSlot(i));

  return {
    run(job) {
      if (closing) return Promise.reject(new Error('the RSA pool is closed'));
      const slot = slots.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
      const id = nextId++;
      return new Promise<Buffer>((resolve, reject) => {
        slot.pending.set(id, { resolve, reject });
        slot.worker.postMessage({ id, job });
      });
    },
    async close() {
      closing = true;
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
