import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import { ApiError } from '../lib/errors.js';
import { decrypt, sign, type EncryptionAlg, type SignatureAlg } from './rsa.js';

/**
 * RSA private-key operations (decrypt/unwrap, sign) on worker threads. They are the one expensive step of a
 * vault request (about half a millisecond each for RSA-2048 here), and the platform's event loop must keep
 * serving TLS, tokens and audit meanwhile. The workers run the same `rsa.ts` functions; keys travel as
 * KeyObjects (cloned to the worker in memory). When no worker is alive the operation runs on the calling
 * thread, so a broken pool slows the vault down but never stops it.
 */

export type PrivateJob =
  | { op: 'decrypt'; key: KeyObject; alg: EncryptionAlg; value: Uint8Array; modulusBytes: number }
  | { op: 'sign'; key: KeyObject; alg: SignatureAlg; value: Uint8Array };

/** What a worker answers: the result, or an API error (already generic where it must be, see rsa.decrypt). */
export type WorkerReply =
  | { id: number; out: Uint8Array }
  | { id: number; error: { status: number; code: string; message: string; innerCode?: string }; detail?: string };

export interface RsaPool {
  run(job: PrivateJob): Promise<Buffer>;
  close(): Promise<void>;
}

interface Slot {
  worker: Worker;
  alive: boolean;
  pending: Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>;
}

const WORKER_URL = new URL('./rsa-worker.js', import.meta.url);
const MAX_RESPAWN_DELAY_MS = 30_000;

/** The operation itself, on whatever thread calls it (the workers call this too). */
export function runPrivateJob(job: PrivateJob): Buffer {
  const value = Buffer.from(job.value.buffer, job.value.byteOffset, job.value.byteLength);
  return job.op === 'decrypt' ? decrypt(job.key, job.alg, value, job.modulusBytes) : sign(job.key, job.alg, value);
}

export function createRsaPool(size = Math.max(1, Math.min(availableParallelism(), 8)), onProblem: (message: string) => void = () => undefined): RsaPool {
  let nextId = 1;
  let closing = false;
  const slots: Slot[] = [];
  const respawnDelay: number[] = [];

  const spawnSlot = (index: number): Slot => {
    const started = Date.now();
    const slot: Slot = { worker: new Worker(WORKER_URL), alive: true, pending: new Map() };
    slot.worker.unref();
    slot.worker.on('message', (m: WorkerReply) => {
      const p = slot.pending.get(m.id);
      if (!p) return;
      slot.pending.delete(m.id);
      if ('out' in m) return p.resolve(Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength));
      if (m.detail) onProblem(`RSA worker: ${m.detail}`);
      p.reject(new ApiError(m.error.status, m.error.code, m.error.message, m.error.innerCode));
    });
    // A worker that dies fails only its own requests; a fresh one takes its place, later each time it dies young.
    const fail = (why: string) => {
      if (!slot.alive) return;
      slot.alive = false;
      for (const p of slot.pending.values()) p.reject(new Error(`the RSA worker stopped: ${why}`));
      slot.pending.clear();
      if (closing) return;
      onProblem(`RSA worker ${index} stopped (${why})`);
      const delay = Date.now() - started < 5_000 ? Math.min(MAX_RESPAWN_DELAY_MS, (respawnDelay[index] || 50) * 2) : 0;
      respawnDelay[index] = delay;
      setTimeout(() => { if (!closing) slots[index] = spawnSlot(index); }, delay).unref();
    };
    slot.worker.on('error', (e) => fail(String(e)));
    slot.worker.on('exit', (code) => fail(`exit code ${code}`));
    return slot;
  };
  for (let i = 0; i < size; i++) slots.push(spawnSlot(i));

  return {
    async run(job) {
      if (closing) throw new Error('the RSA pool is closed');
      const live = slots.filter((s) => s.alive);
      if (!live.length) return runPrivateJob(job);
      const slot = live.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
      const id = nextId++;
      // An exact-size copy, moved to the worker: posting a pooled Buffer would copy its whole 8 KiB slab.
      const value = new Uint8Array(job.value);
      return new Promise<Buffer>((resolve, reject) => {
        slot.pending.set(id, { resolve, reject });
        slot.worker.postMessage({ id, job: { ...job, value } }, [value.buffer]);
      });
    },
    async close() {
      closing = true;
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
