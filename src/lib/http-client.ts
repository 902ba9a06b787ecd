import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { request as httpRequest, type Agent, type ClientRequest } from 'node:http';
import { isIP } from 'node:net';

export interface HttpRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** PEM of the CA to trust (our local CA); system CAs are used when absent. */
  ca?: string;
  /** Client certificate and key, for callers that present one (the platform's trusted services). */
  cert?: string;
  key?: string;
  localAddress?: string;
  timeoutMs?: number;
  /**
   * A pool of kept-alive connections to reuse (see `keepAliveAgent`); `false`: a new connection per call;
   * absent: Node's process-wide global agent.
   */
  agent?: Agent | false;
}

/**
 * A pool of kept-alive HTTPS connections for one client: at most `maxSockets` per origin (and TLS identity),
 * idle ones closed after `idleMs` (under the 65 s our servers keep them, and over the key monitor's
 * default 30 s, so they outlive the gap between two passes), and none keeps the process alive. Its owner destroys it when done.
 */
export function keepAliveAgent(opts: { maxSockets?: number; idleMs?: number } = {}): HttpsAgent {
  return new HttpsAgent({ keepAlive: true, maxSockets: opts.maxSockets ?? 16, maxFreeSockets: opts.maxSockets ?? 16, timeout: opts.idleMs ?? 60_000, scheduling: 'lifo' });
}

/** A kept-alive connection the server closed just as it was reused: the request never reached it, so it is sent again. */
const staleReuse = (r: ClientRequest, e: Error & { code?: string }) =>
  r.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE');

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

export interface HttpBytesResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The whole body in one Buffer that the caller owns (and zeroes when it carries a secret). */
  body: Buffer;
}

/**
 * A small HTTP(S) client with our CA and optional client certificate; no retries, no redirects. The body
 * comes back as bytes and the chunks it was read in are zeroed, so a body that carries a key leaves exactly
 * one copy, the caller's, and never becomes a JS string here.
 */
export function httpCallBytes(req: HttpRequest, retried = false): Promise<HttpBytesResponse> {
  const url = new URL(req.url);
  const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body);
  const requestFn = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    let answered = false;
    const r = requestFn(
      url,
      {
        method: req.method,
        headers: { ...(body ? { 'content-length': String(body.length) } : {}), ...req.headers },
        ca: req.ca,
        cert: req.cert,
        key: req.key,
        localAddress: req.localAddress,
        // A host name that resolves to both families (names under localhost: ::1 first) is reached over the local address's.
        ...(req.localAddress && isIP(req.localAddress) ? { family: isIP(req.localAddress) } : {}),
        timeout: req.timeoutMs ?? 30_000,
        agent: req.agent,
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const all = Buffer.alloc(chunks.reduce((n, c) => n + c.length, 0));
          let at = 0;
          for (const c of chunks) {
            at += c.copy(all, at);
            c.fill(0);
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: all });
        });
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error(`request to ${url.origin} timed out`)));
    r.on('error', (e: Error & { code?: string }) => {
      if (!answered && !retried && staleReuse(r, e)) resolve(httpCallBytes(req, true));
      else reject(e);
    });
    if (body) r.write(body);
    r.end();
  });
}

/** `httpCallBytes` with the body as UTF-8 text, for everything that carries no key. */
export async function httpCall(req: HttpRequest): Promise<HttpResponse> {
  const res = await httpCallBytes(req);
  return { status: res.status, headers: res.headers, text: res.body.toString('utf8') };
}

// ---------------------------------------------------------------------------------------------------------
// JSON bodies that carry a key: built and read as bytes, so the key's base64url form is never a JS string
// (strings cannot be wiped, and live on until the garbage collector finds them).

const ALPHABET = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_', 'latin1');
const DECODE = new Int16Array(256).fill(-1);
ALPHABET.forEach((c, i) => { DECODE[c] = i; });
// Standard base64 decodes too (Azure's SDKs send base64url; some clients pad or use + and /).
DECODE[0x2b] = 62;
DECODE[0x2f] = 63;

/** Unpadded base64url of `bytes`, as ASCII bytes written into `out` at `at`; returns the end offset. */
function encodeInto(bytes: Buffer, out: Buffer, at: number): number {
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out[at++] = ALPHABET[n >> 18]; out[at++] = ALPHABET[(n >> 12) & 63]; out[at++] = ALPHABET[(n >> 6) & 63]; out[at++] = ALPHABET[n & 63];
  }
  const rest = bytes.length - i;
  if (rest) {
    const n = (bytes[i] << 16) | (rest === 2 ? bytes[i + 1] << 8 : 0);
    out[at++] = ALPHABET[n >> 18]; out[at++] = ALPHABET[(n >> 12) & 63];
    if (rest === 2) out[at++] = ALPHABET[(n >> 6) & 63];
  }
  return at;
}

/** Decodes base64url (or base64, padded or not) ASCII bytes into a fresh Buffer; undefined if malformed. */
export function decodeBase64urlBytes(ascii: Buffer): Buffer | undefined {
  let len = ascii.length;
  while (len && ascii[len - 1] === 0x3d) len--;
  if (len % 4 === 1) return undefined;
  // Over an explicit ArrayBuffer: a small typed array lives on V8's heap, and the first native use would
  // move it off-heap and leave the on-heap bytes behind, unwiped.
  const out = Buffer.from(new ArrayBuffer(Math.floor((len * 3) / 4)));
  let acc = 0;
  let bits = 0;
  let at = 0;
  for (let i = 0; i < len; i++) {
    const v = DECODE[ascii[i]];
    if (v < 0) {
      out.fill(0);
      return undefined;
    }
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

/**
 * `{...fields, [secretName]: base64url(secret)}` as JSON bytes. The caller zeroes the result once it has
 * been sent; `secret` is not touched.
 */
export function secretJsonBody(fields: Record<string, string>, secretName: string, secret: Buffer): Buffer {
  const head = Buffer.from(`${JSON.stringify(fields).slice(0, -1)}${Object.keys(fields).length ? ',' : ''}${JSON.stringify(secretName)}:"`, 'utf8');
  const out = Buffer.from(new ArrayBuffer(head.length + Math.ceil((secret.length * 4) / 3) + 2));
  head.copy(out);
  let at = encodeInto(secret, out, head.length);
  out[at++] = 0x22;
  out[at++] = 0x7d;
  return out.subarray(0, at);
}

/**
 * Where the string value of a field `"name": "..."` of a JSON body lies ([start, end) of its characters),
 * found without parsing the body into JS strings; undefined when the field is absent or not a plain
 * string. The first such field wins; callers that need it to be the top-level one check that after parsing.
 */
export function secretJsonRange(body: Buffer, name: string): [number, number] | undefined {
  const key = Buffer.from(JSON.stringify(name), 'utf8');
  const space = (b: number | undefined) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
  let from = 0;
  for (;;) {
    const k = body.indexOf(key, from);
    if (k < 0) return undefined;
    from = k + 1;
    if (k > 0 && body[k - 1] === 0x5c) continue; // an escaped quote inside another string
    let i = k + key.length;
    while (space(body[i])) i++;
    if (body[i] !== 0x3a) continue;
    i++;
    while (space(body[i])) i++;
    if (body[i] !== 0x22) return undefined;
    const end = body.indexOf(0x22, i + 1);
    if (end < 0 || body.subarray(i + 1, end).includes(0x5c)) return undefined; // base64 has no escapes
    return [i + 1, end];
  }
}

/**
 * The decoded bytes of a string field of a JSON body, found without parsing the body into JS strings;
 * undefined when the field is absent or not base64. The body is not touched.
 */
export function secretJsonField(body: Buffer, name: string): Buffer | undefined {
  const range = secretJsonRange(body, name);
  return range ? decodeBase64urlBytes(body.subarray(range[0], range[1])) : undefined;
}
