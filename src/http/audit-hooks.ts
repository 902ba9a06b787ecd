import type { FastifyInstance, FastifyRequest } from 'fastify';
import { errors } from '../lib/errors.js';
import type { AuditRecord } from '../audit/audit.js';
import { queryOf, sourceAddress } from './request.js';

/** The audit hooks of an app: the attempt before a state-changing handler acts, the outcome of every reply. */

/** The error code of a reply's JSON body, for the audit record. */
function errorCodeOf(payload: unknown): string | undefined {
  if (typeof payload !== 'string' || !payload.startsWith('{"error"')) return undefined;
  try {
    const body = JSON.parse(payload) as { error?: string | { code?: string; innererror?: { code?: string } } };
    // The token endpoint answers in the identity platform's shape: {"error":"invalid_client",...}.
    if (typeof body.error === 'string') return body.error;
    return [body.error?.code, body.error?.innererror?.code].filter(Boolean).join('/');
  } catch {
    return undefined;
  }
}

type Describe = (req: FastifyRequest) => Partial<AuditRecord>;
type Appender = { append(r: AuditRecord): number };

function baseRecord(req: FastifyRequest, surface: AuditRecord['surface']): Omit<AuditRecord, 'result' | 'httpStatus'> {
  return {
    time: new Date().toISOString(),
    requestId: String(req.id),
    surface: req.routeOptions.config?.surface ?? surface,
    operation: req.routeOptions.config?.operation ?? 'Unknown',
    sourceAddress: sourceAddress(req),
    ...requestFacts(req),
  };
}

/** What a resource log reports of a request (Azure Monitor's operationVersion, requestUri, clientInfo, correlationId). */
function requestFacts(req: FastifyRequest): Partial<AuditRecord> {
  const q = req.url.indexOf('?');
  const apiVersion = queryOf(req).get('api-version') ?? undefined;
  const ua = req.headers['user-agent'];
  const crid = req.headers['x-ms-client-request-id'];
  return {
    ...(apiVersion ? { apiVersion: apiVersion.slice(0, 32) } : {}),
    requestPath: (q < 0 ? req.url : req.url.slice(0, q)).slice(0, 1024),
    ...(typeof ua === 'string' ? { clientInfo: ua.slice(0, 256) } : {}),
    ...(typeof crid === 'string' ? { clientRequestId: crid.slice(0, 64) } : {}),
  };
}

/** Requests that change state are recorded before they act; reads and computations with their outcome. */
const acts = (req: FastifyRequest) => req.method !== 'GET' && req.method !== 'HEAD' && req.routeOptions.config?.readOnly !== true;

/**
 * The record of an attempt, written after authentication and authorization and before the handler runs: a
 * request whose record cannot be written is refused here, before it has changed anything (audit fails closed).
 */
export function auditAttempt(audit: Appender, surface: AuditRecord['surface'], describe: Describe) {
  return (req: FastifyRequest): void => {
    if (req.routeOptions.config?.audit === false || !acts(req)) return;
    try {
      audit.append({ ...baseRecord(req, surface), result: 'Started', httpStatus: 0, ...describe(req) });
    } catch (err) {
      req.log.error({ err, reqId: req.id }, 'audit append failed; refusing the request before it acts');
      throw errors.auditUnavailable(String(req.id));
    }
  };
}

/**
 * Records the outcome of every reply of an app, refusals included. If the record cannot be written the reply
 * is replaced by an error: a result the audit log did not see is never handed out.
 */
export function installAuditOutcome(app: FastifyInstance, audit: Appender, surface: AuditRecord['surface'], describe: Describe): void {
  app.addHook('onSend', async (req, reply, payload) => {
    reply.header('x-ms-request-id', String(req.id));
    const clientRequestId = req.headers['x-ms-client-request-id'];
    if (typeof clientRequestId === 'string') reply.header('x-ms-client-request-id', clientRequestId);
    if (req.routeOptions.config?.audit === false) return payload;
    try {
      audit.append({
        ...baseRecord(req, surface),
        result: reply.statusCode < 400 ? 'Success' : 'Failure',
        httpStatus: reply.statusCode,
        errorCode: reply.statusCode >= 400 ? errorCodeOf(payload) : undefined,
        durationMs: Math.round(reply.elapsedTime),
        ...describe(req),
      });
    } catch (err) {
      req.log.error({ err, reqId: req.id }, 'audit append failed; refusing the request');
      reply.code(500).header('content-type', 'application/json; charset=utf-8');
      return JSON.stringify(errors.auditUnavailable(String(req.id)).toBody());
    }
    return payload;
  });
}
