import { Agent, request } from 'node:https';

/** One request exactly as the fuzzer means it: the path goes on the wire byte for byte (no URL normalisation). */
export interface RawRequest {
  method: string;
  port: number;
  /** Path and query, unnormalised: dot segments, `//`, `%2F` and percent-encoded letters reach the server as written. */
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/**
 * Sends raw requests to one loopback host over keep-alive HTTPS, trusting only the platform's CA.
 * `new URL()` (and so the harness's client) would resolve `/./` and `/x/../`; this does not.
 */
export function rawSender(host: string, ca: string, maxSockets = 8) {
  if (host !== '127.0.0.1' && host !== '::1' && host !== 'localhost') throw new Error(`the fuzzer sends only to loopback, not ${host}`);
  const agent = new Agent({ keepAlive: true, maxSockets, ca });
  const send = (r: RawRequest): Promise<RawResponse> =>
    new Promise((resolve, reject) => {
      const body = r.body === undefined ? undefined : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body);
      const req = request({
        host, port: r.port, method: r.method, path: r.path, agent, timeout: 30_000,
        headers: { ...(body ? { 'content-length': String(body.length) } : {}), ...r.headers },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: any;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`request ${r.method} ${r.path} timed out`)));
      req.on('error', reject);
      if (body) req.write(body);
      req.end();
    });
  return { send, close: () => agent.destroy() };
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping the results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
