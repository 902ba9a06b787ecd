import { randomUUID } from 'node:crypto';
import { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ApiError, errors, isApiError } from '../lib/errors.js';
import type { AuditRecord } from '../audit/audit.js';
import type { TLSSocket } from 'node:tls';
import { TRUSTED_SERVICE_CN } from '../pki/ca.js';

/** Largest request body any pgbyok HTTP surface accepts (a 4096-bit JWK import is ~3.5 KB; backups are larger). */
export const BODY_LIMIT = 256 * 1024;

export const fastifyOptions = (logger: Logger) => ({
  loggerInstance: logger as unknown as FastifyBaseLogger,
  logController: new LogController({ disableRequestLogging: true }),
  bodyLimit: BODY_LIMIT,
  genReqId: () => randomUUID(),
  ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  // A URL the router cannot decode (`%zz`) is a 400 in Azure's envelope, like every other bad input.
  frameworkErrors: (err: Error & { code?: string }, _req: FastifyRequest, reply: FastifyReply) => {
    const e = err.code === 'FST_ERR_BAD_URL' ? errors.badParameter('The request URL is not validly percent-encoded.') : errors.badParameter(`Invalid request: ${err.message}.`);
    reply.code(e.status).send(e.toBody());
  },
});

/**
 * JSON bodies: an empty body is "no body" (the SDK's first, unauthenticated request sends
 * `Content-Type: application/json` with nothing), and a malformed one is Azure's BadParameter.
 */
export function installJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(errors.badParameter('The request body is not valid JSON.'), undefined);
    }
  });
}

/** Maps every error to Azure's `{"error":{"code","message"}}` envelope; internals are logged, never sent. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: any, req: FastifyRequest, reply: FastifyReply) => {
    let e: ApiError;
    if (isApiError(err)) e = err;
    else if (err.validation) e = errors.badParameter(`Invalid request: ${err.message}.`);
    else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') e = errors.tooLarge(BODY_LIMIT);
    else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') e = errors.badParameter(req.headers['content-type'] ? `Unsupported Content-Type '${req.headers['content-type']}'; send application/json.` : 'The request has a body but no Content-Type; send application/json.');
    else if (err.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') e = errors.badParameter(err.message);
    else if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) e = new ApiError(err.statusCode, 'BadParameter', err.message);
    else {
      req.log.error({ err, reqId: req.id }, 'unhandled error');
      e = errors.internal(String(req.id));
    }
    reply.code(e.status).headers(e.headers).send(e.toBody());
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(new ApiError(404, 'NotFound', `No operation ${req.method} ${req.url.split('?')[0]} exists here.`).toBody());
  });
}

/** The query string as the Azure SDKs send it (names may be percent-encoded: `api%2Dversion`). */
export function queryOf(req: FastifyRequest): URLSearchParams {
  const i = req.url.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : req.url.slice(i + 1));
}

/** The bearer token of a request's Authorization header, or undefined when it carries none. */
export function bearerToken(req: FastifyRequest): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
}

/** The origin the client used, from the Host header (clients follow ids built from it). */
export function requestOrigin(req: FastifyRequest, fallback: string): string {
  const host = req.headers.host;
  return host && /^[A-Za-z0-9.\-[\]:]+$/.test(host) ? `https://${host}` : fallback;
}

export function sourceAddress(req: FastifyRequest): string {
  const a = req.socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

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

/** The caller presented the platform's trusted-service client certificate, issued by our CA. */
export function isTrustedService(req: FastifyRequest): boolean {
  const socket = req.raw.socket as TLSSocket;
  if (!socket.authorized || typeof socket.getPeerCertificate !== 'function') return false;
  return socket.getPeerCertificate()?.subject?.CN === TRUSTED_SERVICE_CN;
}
