import { randomUUID } from 'node:crypto';
import { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ApiError, errors, isApiError } from '../lib/errors.js';

/**
 * What every pgbyok Fastify app (the platform port, the vault ports) is built with: options, the JSON
 * parser, and one error handler that answers in Azure's envelope.
 */

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
