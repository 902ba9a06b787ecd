import { parentPort } from 'node:worker_threads';
import { ApiError } from '../lib/errors.js';
import { decrypt, sign } from './rsa.js';
import type { PrivateJob, WorkerReply } from './rsa-pool.js';

/** One worker of the RSA pool (see rsa-pool.ts): runs a private-key operation and answers with its result. */
parentPort?.on('message', ({ id, job }: { id: number; job: PrivateJob }) => {
  let reply: WorkerReply;
  try {
    const value = Buffer.from(job.value.buffer, job.value.byteOffset, job.value.byteLength);
    const out = job.op === 'decrypt' ? decrypt(job.key, job.alg, value, job.modulusBytes) : sign(job.key, job.alg, value);
    reply = { id, out };
  } catch (e) {
    reply = e instanceof ApiError
      ? { id, error: { status: e.status, code: e.code, message: e.message, innerCode: e.innerCode } }
      : { id, error: { status: 500, code: 'InternalError', message: 'The cryptographic operation failed.' } };
  }
  parentPort!.postMessage(reply);
});
