import { ApiError } from '../../lib/errors.js';
import { KeyAccessError } from '../../keyaccess/key-access.js';

/** A step cannot succeed yet but may later (a source server not Ready yet, a vault briefly away): retried with backoff. */
export class RetryLater extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** The operation no longer has anything to do (a backup of a server that stopped meanwhile): it ends Cancelled. */
export class CancelOperation extends Error {
  constructor(message: string) {
    super(message);
  }
}

export interface PublicError {
  code: string;
  message: string;
}

/** How often a step is tried: unknown failures a few times, waits for something else for about two minutes. */
export function retryPolicy(e: unknown): { attempts: number; delayMs: (attempt: number) => number } {
  if (e instanceof RetryLater || (e instanceof KeyAccessError && e.transient)) {
    return { attempts: 30, delayMs: (n) => Math.min(5000, 250 * 2 ** n) };
  }
  if (e instanceof ApiError || e instanceof KeyAccessError || e instanceof CancelOperation) return { attempts: 1, delayMs: () => 0 };
  return { attempts: 3, delayMs: (n) => 500 * n };
}

/**
 * What the tenant reads about a failed operation: our own codes and messages, never a pg_ctl log tail,
 * mount stderr or a host path (those go to the platform log with the operation id).
 */
export function publicError(e: unknown, operationId: string, step: string): PublicError {
  if (e instanceof ApiError) return { code: e.innerCode ?? e.code, message: e.message };
  if (e instanceof KeyAccessError) return { code: 'KeyAccessFailed', message: `The customer-managed key cannot be reached: ${e.message}.` };
  if (e instanceof RetryLater) return { code: e.code, message: e.message };
  if (e instanceof CancelOperation) return { code: 'OperationCancelled', message: e.message };
  return { code: 'InternalServerError', message: `The operation failed at its step '${step}'. The platform's log has the details under operation ${operationId}.` };
}
