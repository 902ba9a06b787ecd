import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';

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
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** A small HTTP(S) client with our CA and optional client certificate; no retries, no redirects. */
export function httpCall(req: HttpRequest): Promise<HttpResponse> {
  const url = new URL(req.url);
  const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body);
  const requestFn = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = requestFn(
      url,
      {
        method: req.method,
        headers: { ...(body ? { 'content-length': String(body.length) } : {}), ...req.headers },
        ca: req.ca,
        cert: req.cert,
        key: req.key,
        localAddress: req.localAddress,
        timeout: req.timeoutMs ?? 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error(`request to ${url.origin} timed out`)));
    r.on('error', reject);
    if (body) r.write(body);
    r.end();
  });
}
