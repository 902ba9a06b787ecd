import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { writeFileAtomic } from '../lib/home.js';
import { RESOURCES } from '../identity/tokens.js';
import { CliContext, CliError, errorOf, POSTGRES_API_VERSION } from './client.js';

/**
 * Where the CLI's resources live in Azure Resource Manager's terms, as az finds them: the subscription
 * (--subscription, $PGBYOK_SUBSCRIPTION, the one `account set` chose, else the tenant's default, cached),
 * and the resource group (-g, else the configured default, else found by name with the generic resources
 * list; a new resource without either goes to its location's default group `pgbyok-<location>`).
 */

export const API_VERSIONS = {
  resources: '2022-09-01',
  subscriptions: '2022-12-01',
  aliases: '2021-10-01',
  keyVault: '2023-07-01',
  managedIdentity: '2023-01-31',
} as const;

export const TYPES = {
  vault: 'Microsoft.KeyVault/vaults',
  identity: 'Microsoft.ManagedIdentity/userAssignedIdentities',
  server: 'Microsoft.DBforPostgreSQL/flexibleServers',
} as const;

/** The api-version each type's own routes are asked with. */
const TYPE_API_VERSIONS: Record<string, string> = {
  [TYPES.vault]: API_VERSIONS.keyVault,
  [TYPES.identity]: API_VERSIONS.managedIdentity,
  [TYPES.server]: POSTGRES_API_VERSION,
};

const enc = encodeURIComponent;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `$PGBYOK_HOME/cli-config.json`: what `pgbyok configure --defaults` and `account set` keep, and the subscription cache. */
export interface CliConfig {
  defaults?: { group?: string; location?: string };
  /** The subscription the CLI uses, per tenant. */
  subscriptions?: Record<string, string>;
}

export const DEFAULT_KEYS = ['group', 'location'] as const;

const configFile = (ctx: CliContext) => join(ctx.paths.root, 'cli-config.json');

export function readConfig(ctx: CliContext): CliConfig {
  const f = configFile(ctx);
  if (!existsSync(f)) return {};
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as CliConfig;
  } catch {
    throw new CliError(`${f} is not valid JSON; fix or remove it.`);
  }
}

export function writeConfig(ctx: CliContext, c: CliConfig): void {
  writeFileAtomic(configFile(ctx), JSON.stringify(c, null, 2) + '\n', 0o600);
}

/** The configured defaults: `PGBYOK_DEFAULTS_GROUP` / `PGBYOK_DEFAULTS_LOCATION` win over the file (as AZURE_DEFAULTS_* do). */
export function configuredDefaults(ctx: CliContext): { group?: string; location?: string } {
  const d = readConfig(ctx).defaults ?? {};
  return {
    group: process.env.PGBYOK_DEFAULTS_GROUP || d.group || undefined,
    location: process.env.PGBYOK_DEFAULTS_LOCATION || d.location || undefined,
  };
}

export interface ScopeOptions {
  resourceGroup?: string;
  subscription?: string;
}

/** Adds `-g/--resource-group` to a resource command. */
export function withGroup(cmd: Command): Command {
  return cmd.option('-g, --resource-group <name>', "resource group (default: configured with 'pgbyok configure --defaults group=', else found by name; new resources go to pgbyok-<location>)");
}

/** The parts of an ARM id of a top-level resource. */
export function parseArmId(id: string): { subscriptionId: string; resourceGroup: string; type: string; name: string } | undefined {
  const m = /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/([^/]+\/[^/]+)\/([^/]+)\/?$/i.exec(id);
  return m ? { subscriptionId: m[1], resourceGroup: m[2], type: m[3], name: m[4] } : undefined;
}

/** Adds `resourceGroup` (from the ARM id) to a resource, as az prints it. */
export function withResourceGroup<T>(r: T): T {
  if (!r || typeof r !== 'object' || Array.isArray(r)) return r;
  const id = (r as { id?: unknown }).id;
  const p = typeof id === 'string' ? parseArmId(id) : undefined;
  return p ? { ...r, resourceGroup: p.resourceGroup } : r;
}

/** The default group of a location, where the platform also puts what the older tenant path creates. */
export const defaultGroupName = (location: string) => `pgbyok-${location.toLowerCase().replace(/\s+/g, '')}`;

export class Arm {
  private subscriptionIdCache?: string;

  constructor(readonly ctx: CliContext, readonly o: ScopeOptions) {}

  /** The group named on the command line or configured; undefined when neither. */
  get namedGroup(): string | undefined {
    return this.o.resourceGroup || configuredDefaults(this.ctx).group;
  }

  /** --location, else the configured default, else the group's location (when one is named), else the platform's default region. */
  async location(given?: string): Promise<string> {
    if (given) return given;
    const configured = configuredDefaults(this.ctx).location;
    if (configured) return configured;
    const g = this.namedGroup;
    if (g) {
      const r = await this.request('GET', `/resourceGroups/${enc(g)}`, API_VERSIONS.resources);
      if (r.status === 200) return r.body.location;
    }
    return this.ctx.settings.defaultLocation;
  }

  /** The subscription this run acts in. */
  async subscriptionId(): Promise<string> {
    if (this.subscriptionIdCache) return this.subscriptionIdCache;
    const asked = this.o.subscription || process.env.PGBYOK_SUBSCRIPTION;
    const tenant = this.ctx.tenantId;
    let id: string;
    if (asked) {
      id = GUID.test(asked) ? asked : (await this.findSubscription(asked)).subscriptionId;
    } else {
      const config = readConfig(this.ctx);
      const cached = config.subscriptions?.[tenant];
      if (cached) {
        id = cached;
      } else {
        const subs = await this.subscriptions();
        if (!subs.length) throw new CliError(`Tenant ${tenant} has no subscription.`);
        id = subs[0].subscriptionId;
        writeConfig(this.ctx, { ...config, subscriptions: { ...(config.subscriptions ?? {}), [tenant]: id } });
      }
    }
    this.subscriptionIdCache = id;
    return id;
  }

  /** The caller's subscriptions, the tenant's default first (`GET /subscriptions`). */
  async subscriptions(): Promise<any[]> {
    const r = await this.ctx.request(RESOURCES.management, 'GET', `${this.ctx.origin}/subscriptions?api-version=${API_VERSIONS.subscriptions}`);
    if (r.status !== 200) throw errorOf(r);
    return r.body.value;
  }

  async findSubscription(idOrName: string): Promise<any> {
    const subs = await this.subscriptions();
    const s = subs.find((x) => x.subscriptionId.toLowerCase() === idOrName.toLowerCase())
      ?? subs.find((x) => x.displayName.toLowerCase() === idOrName.toLowerCase());
    if (!s) throw new CliError(`Subscription '${idOrName}' not found; 'pgbyok account list' shows yours.`);
    return s;
  }

  /** A call under `/subscriptions/{sub}` (`path` starts with '/'), returning the status instead of throwing. */
  async request(method: string, path: string, apiVersion: string, body?: unknown) {
    const sep = path.includes('?') ? '&' : '?';
    const url = `${this.ctx.origin}/subscriptions/${await this.subscriptionId()}${path}${sep}api-version=${apiVersion}`;
    return this.ctx.request(RESOURCES.management, method, url, body);
  }

  /** A call under `/subscriptions/{sub}` that throws on an error status; returns the body and headers. */
  async callFull(method: string, path: string, apiVersion: string, body?: unknown) {
    const r = await this.request(method, path, apiVersion, body);
    if (r.status >= 400) throw errorOf(r);
    return r;
  }

  async call(method: string, path: string, apiVersion: string, body?: unknown): Promise<any> {
    return (await this.callFull(method, path, apiVersion, body)).body;
  }

  /** Makes a group if it does not exist (used for the pgbyok-<location> defaults only). */
  async ensureGroup(name: string, location: string): Promise<void> {
    const head = await this.request('HEAD', `/resourceGroups/${enc(name)}`, API_VERSIONS.resources);
    if (head.status === 204 || head.status === 200) return;
    if (head.status !== 404) throw errorOf(head);
    await this.call('PUT', `/resourceGroups/${enc(name)}`, API_VERSIONS.resources, { location });
  }

  /** The group a new resource goes to: -g, the configured default, else `pgbyok-<location>` (made on demand). */
  async groupForCreate(location: string): Promise<string> {
    const named = this.namedGroup;
    if (named) return named;
    const g = defaultGroupName(location);
    await this.ensureGroup(g, location);
    return g;
  }

  /** The group an existing resource sits in: -g, the configured default, else found by type and name, as az does. */
  async groupOf(type: string, name: string): Promise<string> {
    return this.namedGroup ?? this.lookupGroup(type, name);
  }

  /** Finds a resource's group by type and name with the generic resources list (ignoring -g and the defaults). */
  async lookupGroup(type: string, name: string): Promise<string> {
    const filter = `resourceType eq '${type}' and name eq '${name.replace(/'/g, "''")}'`;
    const found = (await this.call('GET', `/resources?$filter=${enc(filter)}`, API_VERSIONS.resources)).value as { id: string }[];
    const sub = await this.subscriptionId();
    if (found.length === 0) {
      // The generic list shows only what the caller may read: ask the type's own list, so that a caller who may
      // not read this kind hears AuthorizationFailed rather than "not found".
      await this.call('GET', `/providers/${type}`, TYPE_API_VERSIONS[type] ?? API_VERSIONS.resources);
      throw new CliError(`(ResourceNotFound) The Resource '${type}/${name}' was not found in subscription ${sub}.`, 3);
    }
    if (found.length > 1) {
      throw new CliError(`There are ${found.length} resources '${type}/${name}' in subscription ${sub} (${found.map((r) => parseArmId(r.id)?.resourceGroup).join(', ')}); name one with --resource-group.`);
    }
    const p = parseArmId(found[0].id);
    if (!p) throw new CliError(`Unexpected resource id ${found[0].id}`);
    return p.resourceGroup;
  }

  /** `/resourceGroups/{rg}/providers/{type}/{name}` of a resource (relative to the subscription). */
  static path(group: string, type: string, name: string): string {
    return `/resourceGroups/${enc(group)}/providers/${type}/${enc(name)}`;
  }

  /** An existing resource's path, its group found as `groupOf` does. */
  async pathOf(type: string, name: string): Promise<string> {
    return Arm.path(await this.groupOf(type, name), type, name);
  }

  /** Where a list of a type is asked: the named group's, else the whole subscription's. */
  listPath(type: string): string {
    const g = this.namedGroup;
    return g ? `/resourceGroups/${enc(g)}/providers/${type}` : `/providers/${type}`;
  }

  /** The full ARM id of a path relative to the subscription. */
  async idOf(path: string): Promise<string> {
    return `/subscriptions/${await this.subscriptionId()}${path}`;
  }
}

/** Builds the resolver from a command's options (-g and the global --subscription). */
export const armOf = (ctx: CliContext, o: ScopeOptions) => new Arm(ctx, o);
