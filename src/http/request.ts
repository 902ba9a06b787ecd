import type { FastifyRequest } from 'fastify';
import type { TLSSocket } from 'node:tls';
import { TRUSTED_SERVICE_CN } from '../pki/ca.js';
import { errors } from '../lib/errors.js';

/** What a handler or hook reads off a request: query, bearer token, origin, source address, trusted service. */

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

/** The origin the client used, for URLs it is to follow (Location, Azure-AsyncOperation); a Host that is not a host is refused. */
export function clientOrigin(req: FastifyRequest): string {
  const o = requestOrigin(req, '');
  if (!o) throw errors.badParameter('The Host header is not a valid host name.');
  return o;
}

export function sourceAddress(req: FastifyRequest): string {
  const a = req.socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/** The caller presented the platform's trusted-service client certificate, issued by our CA. */
export function isTrustedService(req: FastifyRequest): boolean {
  const socket = req.raw.socket as TLSSocket;
  if (!socket.authorized || typeof socket.getPeerCertificate !== 'function') return false;
  return socket.getPeerCertificate()?.subject?.CN === TRUSTED_SERVICE_CN;
}
