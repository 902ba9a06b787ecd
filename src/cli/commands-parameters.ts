import type { Command } from 'commander';
import { CliContext, CliError } from './client.js';
import { action } from './run.js';
import { withGroup, type ScopeOptions } from './arm.js';
import { serverAddress } from './servers-address.js';

const enc = encodeURIComponent;
const COLUMNS = ['name', 'properties.value', 'properties.dataType', 'properties.allowedValues', 'properties.source', 'properties.isDynamicConfig', 'properties.isConfigPendingRestart'];

/** `pgbyok server parameter list|show|set`, as `az postgres flexible-server parameter`. */
export function registerParameterCommands(server: Command): void {
  const parameter = server.command('parameter').description('server parameters (Azure\'s configurations): an allow-list with types, ranges and defaults');
  const url = async (ctx: CliContext, o: ScopeOptions & { serverName: string }, name?: string) =>
    `${await serverAddress(ctx, o).path(o.serverName)}/configurations${name ? `/${enc(name)}` : ''}`;

  withGroup(parameter.command('list')).requiredOption('--server-name <server>')
    .action(action<ScopeOptions & { serverName: string }>(async (ctx, o) => (await ctx.mgmt('GET', await url(ctx, o))).value, COLUMNS));
  withGroup(parameter.command('show')).requiredOption('--server-name <server>').requiredOption('--name <parameter>')
    .action(action<ScopeOptions & { serverName: string; name: string }>(async (ctx, o) => ctx.mgmt('GET', await url(ctx, o, o.name))));
  withGroup(parameter.command('set')).description('set a parameter: dynamic ones apply at once (reload), the others at the next `server restart`')
    .requiredOption('--server-name <server>').requiredOption('--name <parameter>').requiredOption('--value <value>')
    .option('--no-wait')
    .action(action<ScopeOptions & { serverName: string; name: string; value: string; wait: boolean }>(async (ctx, o) => {
      const path = await url(ctx, o, o.name);
      const res = await ctx.mgmtFull('PUT', path, { properties: { value: o.value, source: 'user-override' } });
      const op = res.headers['azure-asyncoperation'] as string | undefined;
      if (!op || !o.wait) return res.body;
      const done = await ctx.waitForOperation(op, 'Applying');
      if (done.status !== 'Succeeded') throw new CliError(`Applying ${o.name} on ${o.serverName} failed: ${done.error?.message ?? done.status}`);
      return ctx.mgmt('GET', path);
    }));
}
