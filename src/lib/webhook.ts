import type { Logger } from 'pino';
import { httpCall } from './http-client.js';

/**
 * POSTs a JSON payload to a webhook, retrying with backoff so a receiver that blinks still gets it. It runs
 * in the background: callers never wait for it and its failure never fails them.
 */
export function deliverWebhook(
  url: string,
  payload: unknown,
  opts: { ca?: string; logger: Logger; headers?: Record<string, string>; retryDelaysMs?: number[]; what: string },
): void {
  const delays = opts.retryDelaysMs ?? [1000, 2000, 4000, 8000, 16000];
  const body = JSON.stringify(payload);
  void (async () => {
    for (let attempt = 0; attempt <= delays.length; attempt++) {
      try {
        const res = await httpCall({ method: 'POST', url, body, ca: opts.ca, timeoutMs: 10_000, headers: { 'content-type': 'application/json', ...opts.headers } });
        if (res.status >= 200 && res.status < 300) return;
        opts.logger.warn({ url, status: res.status, what: opts.what }, 'webhook refused');
      } catch (e) {
        opts.logger.warn({ url, err: (e as Error).message, what: opts.what }, 'webhook delivery failed');
      }
      if (attempt < delays.length) await new Promise((r) => setTimeout(r, delays[attempt]).unref());
    }
    opts.logger.error({ url, what: opts.what }, 'webhook dropped after retries');
  })();
}
