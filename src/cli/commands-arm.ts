import type { Command } from 'commander';
import { RESOURCES } from '../identity/tokens.js';
import { API_VERSIONS, armOf, configuredDefaults, DEFAULT_KEYS, readConfig, writeConfig, type ScopeOptions } from './arm.js';
import { CliContext, CliError, errorOf } from './client.js';
import { action, parseTags } from './run.js';

const enc = encodeURIComponent;
const RG = API_VERSIONS.resources;

/** A subscription as `az account list` prints it. */
function accountWire(s: any, current: string, user: { name: string; type: string }) {
  return {
    id: s.subscriptionId, name: s.displayName, state: s.state, tenantId: s.tenantId, isDefault: s.subscriptionId === current,
    resourceId: s.id, user,
  };
}

async function confirm(question: string, yes?: boolean): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY) throw new CliError(`${question.replace(/\?$/, '')}: confirm with --yes.`);
  process.stderr.write(`${question} [y/N] `);
  const answer = await new Promise<string>((r) => process.stdin.once('data', (d) => r(String(d).trim())));
  process.stdin.pause();
  if (!/^y(es)?$/i.test(answer)) throw new CliError('Not deleted.');
}

/** Polls an ARM `location` header until the operation is no longer 202. */
async function waitForLocation(ctx: CliContext, url: string, label: string): Promise<void> {
  const tty = process.stderr.isTTY;
  const started = Date.now();
  for (;;) {
    const r = await ctx.request(RESOURCES.management, 'GET', url);
    if (r.status !== 202) {
      if (tty) process.stderr.write('\r\x1b[K');
      if (r.status >= 400) throw errorOf(r);
      return;
    }
    if (tty) process.stderr.write(`\r\x1b[K${label}... ${Math.round((Date.now() - started) / 1000)}s`);
    await new Promise((res) => setTimeout(res, 300));
  }
}

/** `account`, `group` and `configure`: subscriptions, resource groups and the CLI's defaults, as az has them. */
export function registerArmCommands(program: Command): void {
  const account = program.command('account').description('the signed-in principal and its subscriptions');
  account.command('show').description('who the CLI acts as (roles, tenant) and the subscription it uses')
    .action(action<ScopeOptions>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      const self = await ctx.mgmt('GET', '/tenants/self');
      const sub = await arm.findSubscription(await arm.subscriptionId());
      return {
        ...self,
        subscriptionId: sub.subscriptionId,
        subscription: { id: sub.id, name: sub.displayName, state: sub.state },
        user: { name: self.clientId, type: 'servicePrincipal' },
      };
    }));
  account.command('list').description('the subscriptions of the signed-in principal (isDefault: the one the CLI uses)')
    .action(action<ScopeOptions>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      const current = await arm.subscriptionId();
      const user = { name: ctx.credential().clientId, type: 'servicePrincipal' };
      return (await arm.subscriptions()).map((s) => accountWire(s, current, user));
    }, ['name', 'id', 'state', 'isDefault']));
  account.command('set').description('use this subscription from now on (for the signed-in tenant): account set --subscription <idOrName>')
    .action(action<ScopeOptions>(async (ctx, o) => {
      if (!o.subscription) throw new CliError('Name the subscription with --subscription <idOrName>.');
      const s = await armOf(ctx, {}).findSubscription(o.subscription);
      const c = readConfig(ctx);
      writeConfig(ctx, { ...c, subscriptions: { ...(c.subscriptions ?? {}), [ctx.tenantId]: s.subscriptionId } });
      return undefined;
    }));
  const aliasCreate = async (ctx: CliContext, alias: string, displayName?: string) => {
    const url = `${ctx.origin}/providers/Microsoft.Subscription/aliases/${enc(alias)}?api-version=${API_VERSIONS.aliases}`;
    const r = await ctx.request(RESOURCES.management, 'PUT', url, { properties: { displayName: displayName ?? alias, workload: 'Production' } });
    if (r.status >= 400) throw errorOf(r);
    return r.body;
  };
  const alias = account.command('alias').description('subscription aliases (az account alias): how a new subscription is made');
  alias.command('create').requiredOption('-n, --name <alias>').option('--display-name <name>')
    .action(action<{ name: string; displayName?: string }>(async (ctx, o) => aliasCreate(ctx, o.name, o.displayName)));
  alias.command('show').requiredOption('-n, --name <alias>')
    .action(action<{ name: string }>(async (ctx, o) => {
      const r = await ctx.request(RESOURCES.management, 'GET', `${ctx.origin}/providers/Microsoft.Subscription/aliases/${enc(o.name)}?api-version=${API_VERSIONS.aliases}`);
      if (r.status >= 400) throw errorOf(r);
      return r.body;
    }));
  account.command('subscription').description('subscriptions').command('create')
    .description('create a subscription of the signed-in tenant (idempotent per alias); prints the subscription')
    .requiredOption('--alias <alias>').option('--display-name <name>')
    .action(action<ScopeOptions & { alias: string; displayName?: string }>(async (ctx, o) => {
      const a = await aliasCreate(ctx, o.alias, o.displayName);
      const arm = armOf(ctx, {});
      const user = { name: ctx.credential().clientId, type: 'servicePrincipal' };
      return accountWire(await arm.findSubscription(a.properties.subscriptionId), await armOf(ctx, o).subscriptionId(), user);
    }));

  const group = program.command('group').description('resource groups (az group)');
  type GroupOpts = ScopeOptions & { name?: string };
  const named = (o: GroupOpts) => {
    const n = o.name ?? o.resourceGroup;
    if (!n) throw new CliError('Name the group with --name (or -g).');
    return n;
  };
  const groupCmd = (name: string, description: string) => group.command(name).description(description)
    .option('-n, --name <name>', 'the resource group').option('-g, --resource-group <name>', 'the resource group (as --name)');
  groupCmd('create', 'create a resource group (or update its tags)')
    .option('-l, --location <region>', "its location (default: 'configure --defaults location=', else the platform's region)")
    .option('--tags <k=v...>')
    .action(action<GroupOpts & { location?: string; tags?: string[] }>(async (ctx, o) => {
      const location = o.location ?? configuredDefaults(ctx).location ?? ctx.settings.defaultLocation;
      return armOf(ctx, o).call('PUT', `/resourceGroups/${enc(named(o))}`, RG, { location, ...(o.tags ? { tags: parseTags(o.tags) } : {}) });
    }));
  groupCmd('show', 'show a resource group').action(action<GroupOpts>(async (ctx, o) =>
    armOf(ctx, o).call('GET', `/resourceGroups/${enc(named(o))}`, RG)));
  group.command('list').description('the resource groups of the subscription').action(action<ScopeOptions>(async (ctx, o) =>
    (await armOf(ctx, o).call('GET', '/resourceGroups', RG)).value, ['name', 'location', 'properties.provisioningState']));
  groupCmd('exists', 'true if the group exists, else false').action(action<GroupOpts>(async (ctx, o) => {
    const r = await armOf(ctx, o).request('HEAD', `/resourceGroups/${enc(named(o))}`, RG);
    if (r.status >= 400 && r.status !== 404) throw errorOf(r);
    return r.status !== 404;
  }));
  groupCmd('delete', 'delete a resource group and everything in it (vaults are soft-deleted)')
    .option('-y, --yes', 'do not ask for confirmation').option('--no-wait', 'return once the delete has begun')
    .action(action<GroupOpts & { yes?: boolean; wait: boolean }>(async (ctx, o) => {
      const name = named(o);
      await confirm(`Delete resource group ${name} and everything in it?`, o.yes);
      const r = await armOf(ctx, o).request('DELETE', `/resourceGroups/${enc(name)}`, RG);
      if (r.status >= 400) throw errorOf(r);
      const location = r.headers.location as string | undefined;
      if (r.status === 202 && location && o.wait) await waitForLocation(ctx, location, 'Deleting');
      return undefined;
    }));

  program.command('configure').description("the CLI's defaults (az configure): group= and location=")
    .option('-d, --defaults <key=value...>', "set defaults, e.g. group=rg1 location=eastus ('group=' unsets)")
    .option('-l, --list-defaults', 'show the defaults')
    .action(action<{ defaults?: string[]; listDefaults?: boolean }>(async (ctx, o) => {
      if (!o.defaults && !o.listDefaults) throw new CliError("Give --defaults key=value... or --list-defaults.");
      const c = readConfig(ctx);
      if (o.defaults) {
        const d = { ...(c.defaults ?? {}) };
        for (const pair of o.defaults) {
          const i = pair.indexOf('=');
          const key = (i < 0 ? pair : pair.slice(0, i)) as (typeof DEFAULT_KEYS)[number];
          if (!DEFAULT_KEYS.includes(key)) throw new CliError(`Unknown default '${key}': use ${DEFAULT_KEYS.join(' or ')}.`);
          const value = i < 0 ? '' : pair.slice(i + 1);
          if (value) d[key] = value;
          else delete d[key];
        }
        writeConfig(ctx, { ...c, defaults: d });
        if (!o.listDefaults) return undefined;
      }
      return Object.entries(readConfig(ctx).defaults ?? {}).map(([name, value]) => ({ name, value, source: 'cli-config.json' }));
    }, ['name', 'value']));
}
