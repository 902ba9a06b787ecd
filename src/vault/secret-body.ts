import type { FastifyInstance } from 'fastify';
import { BODY_LIMIT } from '../http/app-setup.js';
import { errors } from '../lib/errors.js';
import { decodeBase64urlBytes, secretJsonRange } from '../lib/http-client.js';

/** Where the crypto routes' parser puts the decoded `value` (a DEK, for wrapKey): bytes, never a string. */
export const SECRET_VALUE = Symbol('secretValue');
export type WithSecretValue = { [SECRET_VALUE]?: Buffer };

/** base64url characters, then at most two '=' (as the string path's /^[A-Za-z0-9_-]*={0,2}$/), checked on the bytes. */
function isBase64url(raw: Buffer): boolean {
  let end = raw.length;
  for (let pad = 0; pad < 2 && end > 0 && raw[end - 1] === 0x3d; pad++) end--;
  for (let i = 0; i < end; i++) {
    const c = raw[i];
    const ok = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
    if (!ok) return false;
  }
  return true;
}

/**
 * Parses a crypto request's JSON body without making its `value` a JS string: the bytes are collected and
 * wiped here, the value's characters are decoded straight into a Buffer, and the rest of the body is
 * parsed from a copy where those characters are masked. Written by hand because JSON.parse (and every JSON
 * library) hands field values out as strings, which cannot be wiped.
 */
export function parseSecretJson(body: Buffer): (Record<string, unknown> & WithSecretValue) | undefined {
  const masked = Buffer.from(new ArrayBuffer(body.length));
  body.copy(masked);
  try {
    const range = secretJsonRange(body, 'value');
    let placeholder: string | undefined;
    if (range) {
      masked.fill(0x41, range[0], range[1]); // 'A'
      placeholder = 'A'.repeat(range[1] - range[0]);
    }
    const text = masked.toString('utf8');
    if (text.trim() === '') return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw errors.badParameter('The request body is not valid JSON.');
    }
    // Only when the masked field was the top-level `value` is the secret taken from the bytes.
    if (range && parsed && typeof parsed === 'object' && !Array.isArray(parsed) && (parsed as Record<string, unknown>).value === placeholder) {
      const raw = body.subarray(range[0], range[1]);
      const value = isBase64url(raw) ? decodeBase64urlBytes(raw) : undefined;
      if (!value) throw errors.badParameter("'value' must be a base64url string.");
      Object.defineProperty(parsed, SECRET_VALUE, { value, enumerable: false });
    }
    return parsed as Record<string, unknown>;
  } finally {
    masked.fill(0);
  }
}

/** Installs that parser for `application/json` in a scope (the crypto routes), with the same size limit. */
export function installSecretJsonParser(scope: FastifyInstance): void {
  scope.removeContentTypeParser('application/json');
  scope.addContentTypeParser('application/json', (_req, payload, done) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let finished = false;
    const wipe = () => chunks.forEach((c) => c.fill(0));
    const finish = (err: Error | null, value?: unknown) => {
      if (finished) return;
      finished = true;
      wipe();
      done(err, value);
    };
    payload.on('data', (c: Buffer) => {
      if (finished) return void c.fill(0);
      size += c.length;
      chunks.push(c);
      if (size > BODY_LIMIT) finish(errors.tooLarge(BODY_LIMIT));
    });
    payload.on('error', (e) => finish(e));
    payload.on('end', () => {
      if (finished) return;
      const body = Buffer.from(new ArrayBuffer(size));
      let at = 0;
      for (const c of chunks) at += c.copy(body, at);
      try {
        finish(null, parseSecretJson(body));
      } catch (e) {
        finish(e as Error);
      } finally {
        body.fill(0);
      }
    });
  });
}
