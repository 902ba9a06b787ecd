import { parentPort } from 'node:worker_threads';
import { ApiError } from '../lib/errors.js';
import { runPrivateJob, type PrivateJob, type WorkerReply } from './rsa-pool.js';

/** One worker of the RSA pool (see rsa-pool.ts): runs a private-key operation and answers with its result. */
parentPort?.on('message', ({ id, job }: { id: number; job: PrivateJob }) => {
  try {
    const out = runPrivateJob(job);
    // Moved, not copied, and the worker's own copy is wiped: an unwrapped DEK leaves no trace here.
    // Over an explicit ArrayBuffer: a small (<= 64-byte) typed array would be on V8's heap, and transferring
    // it would leave that on-heap copy behind.
    const moved = new Uint8Array(new ArrayBuffer(out.length));
    moved.set(out);
    out.fill(0);
    parentPort!.postMessage({ id, out: moved } satisfies WorkerReply, [moved.buffer]);
  } catch (e) {
    const reply: WorkerReply = e instanceof ApiError
      ? { id, error: { status: e.status, code: e.code, message: e.message, innerCode: e.innerCode } }
      : { id, error: { status: 500, code: 'InternalError', message: 'The cryptographic operation failed.' }, detail: e instanceof Error ? `${e.name}: ${e.message}` : 'unknown failure' };
    parentPort!.postMessage(reply);
  }
});
