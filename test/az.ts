/**
 * Runs the real Azure CLI (`az`, Debian's azure-cli 2.45 on the test machine) against a pgbyok instance: a
 * throw-away config dir per session, pgbyok's CA as the only trust anchor, JSON output, a timeout, and no way
 * out to Microsoft (every proxied request goes to a closed port; only loopback names bypass the proxy).
 * Asynchronous, so it can drive an in-process platform too.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** The az executable: `PGBYOK_TEST_AZ`, else the first `az` on PATH; undefined when there is none. */
export function findAz(): string | undefined {
  const candidates = process.env.PGBYOK_TEST_AZ ? [process.env.PGBYOK_TEST_AZ] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'az'));
  return candidates.find((c) => {
    try {
      accessSync(c, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The Python interpreter az runs on (its `#!` line), to drive the libraries az uses (msal) directly. */
export function azPython(az: string): string {
  const shebang = /^#!\s*(\S+)/.exec(readFileSync(az, 'utf8').split('\n', 1)[0]);
  return shebang?.[1] ?? 'python3';
}

export interface AzResult {
  status: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (undefined when empty or not JSON). */
  json: any;
}

export interface AzSession {
  /** AZURE_CONFIG_DIR of this session. */
  configDir: string;
  env: NodeJS.ProcessEnv;
  /** Runs az with `--output json`; never throws for a non-zero exit. */
  run(args: string[], opts?: { env?: Record<string, string>; timeoutMs?: number }): Promise<AzResult>;
  /** Runs az and answers its JSON output; throws with az's stderr on a non-zero exit. */
  json(...args: string[]): Promise<any>;
  close(): void;
}

export function azSession(opts: { az: string; caFile: string; env?: Record<string, string>; timeoutMs?: number }): AzSession {
  const configDir = mkdtempSync(join(tmpdir(), 'pgbyok-az-'));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH, HOME: configDir, LANG: 'C.UTF-8',
    AZURE_CONFIG_DIR: configDir,
    // requests (MSAL, the SDKs) reads REQUESTS_CA_BUNDLE; az's own urlopen (ARM_CLOUD_METADATA_URL) the OpenSSL default.
    REQUESTS_CA_BUNDLE: opts.caFile, SSL_CERT_FILE: opts.caFile,
    HTTPS_PROXY: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9', NO_PROXY: '127.0.0.1,localhost,.localhost,[::1]',
    AZURE_CORE_COLLECT_TELEMETRY: 'false', AZURE_CORE_NO_COLOR: 'true', AZURE_CORE_SURVEY_MESSAGE: 'false', AZURE_CORE_OUTPUT: 'json',
    ...opts.env,
  };
  const run = (args: string[], o: { env?: Record<string, string>; timeoutMs?: number } = {}) =>
    new Promise<AzResult>((resolve) => {
      execFile(opts.az, [...args, '--output', 'json'], { env: { ...env, ...o.env }, timeout: o.timeoutMs ?? opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
        let json: unknown;
        try {
          json = stdout.trim() ? JSON.parse(stdout) : undefined;
        } catch {
          json = undefined;
        }
        const status = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
        resolve({ status, stdout, stderr: err && status === null ? `${stderr}\n(az did not finish: ${err.message})` : stderr, json });
      });
    });
  return {
    configDir, env, run,
    async json(...args) {
      const r = await run(args);
      if (r.status !== 0) throw new Error(`az ${redacted(args).join(' ')} exited ${r.status}:\n${r.stderr}`);
      return r.json;
    },
    close: () => rmSync(configDir, { recursive: true, force: true }),
  };
}

/** The arguments with the value of every password option hidden, for messages. */
export const redacted = (args: string[]) => args.map((a, i) => (i > 0 && /^(-p|--password)$/.test(args[i - 1]) ? '***' : a.replace(/^(--password=|-p=).*/, '$1***')));
