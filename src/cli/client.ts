import { existsSync, readFileSync } from 'node:fs';
import { httpCall } from '../lib/http-client.js';
import { homePaths, originOf, readSettings, resolveHome, type HomePaths, type Settings } from '../lib/home.js';
import { RESOURCES } from '../identity/tokens.js';
import { createNames } from '../lib/names.js';

/** A failure the CLI reports as one line and a non-zero exit. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

export interface Credential {
  tenantId: string;
  clientId: string;
  clientSecret: string;
}

export const API_VERSION = '7.6';
export const MGMT_API_VERSION = '2023-07-01';
/** Each resource provider checks its own api-versions on ARM paths; the one this CLI speaks per namespace. */
export const POSTGRES_API_VERSION = '2024-08-01';
const PROVIDER_API_VERSIONS: Record<string, string> = { 'microsoft.dbforpostgresql': POSTGRES_API_VERSION };
const apiVersionFor = (path: string) => PROVIDER_API_VERSIONS[/\/providers\/([^/]+)\//i.exec(path)?.[1].toLowerCase() ?? ''] ?? MGMT_API_VERSION;
/** A path or URL with an api-version (one already there, as in an Azure-AsyncOperation URL, is kept). */
const withApiVersion = (url: string) => /[?&]api-version=/.test(url) ? url : `${url}${url.includes('?') ? '&' : '?'}api-version=${apiVersionFor(url)}`;

/** What every command needs: where the platform is, whom we act as, and how to call it over HTTPS. */
export class CliContext {
  readonly paths: HomePaths;
  private cachedSettings?: Settings;
  private tokens = new Map<string, string>();

  constructor(home?: string) {
    this.paths = homePaths(resolveHome(home));
  }

  get settings(): Settings {
    if (!this.cachedSettings) {
      const s = readSettings(this.paths);
      if (!s) throw new CliError(`pgbyok has not been started with home ${this.paths.root}; run 'pgbyok up' first (or set PGBYOK_HOME).`, 3);
      this.cachedSettings = s;
    }
    return this.cachedSettings;
  }

  get origin(): string {
    return originOf(this.settings.host, this.settings.port);
  }

  /** The vaults' token audience (`https://vault.<domain>`); a home started before vaults had names: Azure's. */
  get vaultResource(): string {
    const s = this.settings;
    return s.domain && s.vaultPort ? createNames(s.domain, s.vaultPort).vaultResource : RESOURCES.azureVault;
  }

  /** A managed HSM's URI, as az builds it from --hsm-name: `https://NAME.managedhsm.<domain>[:port]/`. */
  hsmUri(name: string): string {
    const s = this.settings;
    if (!s.domain || !s.vaultPort) throw new CliError(`The platform of home ${this.paths.root} serves no managed HSMs; restart it with 'pgbyok up'.`);
    return createNames(s.domain, s.vaultPort).hsmUri(name);
  }

  /** The audience of a data-plane URI: a managed HSM's (`https://managedhsm.<domain>`), else the vaults'. */
  dataResource(uri: string): string {
    const s = this.settings;
    if (!s.domain || !s.vaultPort) return this.vaultResource;
    const names = createNames(s.domain, s.vaultPort);
    return names.hsmNameOf(new URL(uri).host) !== undefined ? names.hsmResource : names.vaultResource;
  }

  get ca(): string {
    if (!existsSync(this.paths.caCert)) throw new CliError(`No CA certificate at ${this.paths.caCert}; run 'pgbyok up' first.`, 3);
    return readFileSync(this.paths.caCert, 'utf8');
  }

  /**
   * The signed-in principal: `pgbyok login` wins, else the bootstrap administrator. Exit 3 when pgbyok was
   * never started on this home (signing in is not the cause then), 4 when no credential can be read.
   */
  credential(): Credential {
    for (const file of [this.paths.cliProfile, this.paths.adminCredential]) {
      if (existsSync(file)) {
        let c: Credential;
        try {
          c = JSON.parse(readFileSync(file, 'utf8')) as Credential;
        } catch (e) {
          throw new CliError(`The credential ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}). Use 'pgbyok login', or run as the user that started pgbyok.`, 4);
        }
        return { tenantId: c.tenantId, clientId: c.clientId, clientSecret: c.clientSecret };
      }
    }
    void this.settings;
    throw new CliError(`No credential found: neither ${this.paths.cliProfile} nor ${this.paths.adminCredential} exists or is readable (the administrator's is root's only). Use 'pgbyok login', or run as the user that started pgbyok.`, 4);
  }

  get tenantId(): string {
    return this.credential().tenantId;
  }

  async token(resource: string, cred = this.credential()): Promise<string> {
    const cacheKey = `${cred.clientId}|${resource}`;
    const cached = this.tokens.get(cacheKey);
    if (cached) return cached;
    const res = await this.raw({
      method: 'POST',
      url: `${this.origin}/${cred.tenantId}/oauth2/v2.0/token`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials', client_id: cred.clientId, client_secret: cred.clientSecret, scope: `${resource}/.default`,
      }).toString(),
    });
    const body = parseJson(res.text);
    if (res.status !== 200) throw new CliError(`Sign-in failed: ${body?.error_description?.split('\r\n')[0] ?? res.text}`, 4);
    this.tokens.set(cacheKey, body.access_token);
    return body.access_token;
  }

  async raw(req: { method: string; url: string; headers?: Record<string, string>; body?: string }) {
    const ca = this.ca;
    try {
      return await httpCall({ ...req, ca });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ECONNREFUSED') throw new CliError(`Cannot reach ${new URL(req.url).origin}: pgbyok is not running; start it with 'pgbyok up'.`, 3);
      throw new CliError(`Request to ${new URL(req.url).origin} failed: ${err.message}`);
    }
  }

  private async call(resource: string, method: string, url: string, body?: unknown): Promise<any> {
    return (await this.callFull(resource, method, url, body)).body;
  }

  private async callFull(resource: string, method: string, url: string, body?: unknown): Promise<{ body: any; headers: Record<string, string | string[] | undefined> }> {
    const res = await this.request(resource, method, url, body);
    if (res.status >= 400) throw errorOf(res);
    return res;
  }

  /** One signed call that does not throw on an error status (HEAD, 404 lookups, long-operation polls). */
  async request(resource: string, method: string, url: string, body?: unknown): Promise<{ status: number; body: any; headers: Record<string, string | string[] | undefined>; text: string }> {
    const token = await this.token(resource);
    const res = await this.raw({
      method,
      url,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: res.text ? parseJson(res.text) : undefined, headers: res.headers, text: res.text };
  }

  /** A management call that also returns the response headers (for long operations). */
  mgmtFull(method: string, path: string, body?: unknown) {
    return this.callFull(RESOURCES.management, method, this.mgmtUrl(path), body);
  }

  /** A management URL: `path` is relative to the caller's tenant unless it starts with '/'; the provider's api-version added. */
  private mgmtUrl(path: string): string {
    const full = path.startsWith('/') ? path : `/tenants/${this.tenantId}/${path}`;
    return `${this.origin}${withApiVersion(full)}`;
  }

  /** Polls an operation URL until it ends; returns it (the CLI shows progress on a terminal). */
  async waitForOperation(url: string, label: string): Promise<any> {
    const started = Date.now();
    const tty = process.stderr.isTTY;
    for (;;) {
      const token = await this.token(RESOURCES.management);
      const res = await this.raw({ method: 'GET', url: withApiVersion(url), headers: { authorization: `Bearer ${token}` } });
      const op = parseJson(res.text);
      if (res.status !== 200) throw new CliError(op?.error?.message ?? `HTTP ${res.status} while polling ${url}`);
      if (op.status !== 'InProgress' && op.status !== 'Queued') {
        if (tty) process.stderr.write('\r\x1b[K');
        return op;
      }
      if (tty) process.stderr.write(`\r\x1b[K${label}... ${Math.round((Date.now() - started) / 1000)}s`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  /** A management-plane call; `path` is relative to the caller's tenant unless it starts with '/'. */
  mgmt(method: string, path: string, body?: unknown): Promise<any> {
    return this.call(RESOURCES.management, method, this.mgmtUrl(path), body);
  }

  /** A Key Vault (or managed HSM) data-plane call, exactly as an SDK makes it (token for the URI's resource). */
  vault(vaultUri: string, method: string, path: string, body?: unknown): Promise<any> {
    const base = vaultUri.replace(/\/$/, '');
    const sep = path.includes('?') ? '&' : '?';
    return this.call(this.dataResource(vaultUri), method, `${base}${path}${sep}api-version=${API_VERSION}`, body);
  }

  /** Resolves a vault name to its URI through the public discovery endpoint (Azure's DNS does this). */
  async vaultUri(name: string): Promise<string> {
    const res = await this.raw({ method: 'GET', url: `${this.origin}/discovery/vaults/${encodeURIComponent(name)}` });
    if (res.status === 404) throw new CliError(`Vault '${name}' was not found.`);
    if (res.status !== 200) throw new CliError(`Vault lookup failed: HTTP ${res.status}`);
    return parseJson(res.text).vaultUri;
  }

  /** Follows nextLink pages of a data-plane list. */
  async vaultList(vaultUri: string, path: string): Promise<any[]> {
    const out: any[] = [];
    let page = await this.vault(vaultUri, 'GET', path);
    out.push(...page.value);
    while (page.nextLink) {
      const token = await this.token(this.dataResource(vaultUri));
      const res = await this.raw({ method: 'GET', url: page.nextLink, headers: { authorization: `Bearer ${token}` } });
      page = parseJson(res.text);
      if (res.status !== 200) throw new CliError(page?.error?.message ?? `HTTP ${res.status}`);
      out.push(...page.value);
    }
    return out;
  }
}

/** An ARM error answer as one line: `(Code) message`. */
export function errorOf(res: { status: number; body: any; text: string }): CliError {
  const e = res.body?.error;
  return new CliError(e ? `(${e.innererror?.code ?? e.code}) ${e.message}` : `HTTP ${res.status}: ${res.text}`);
}

function parseJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
