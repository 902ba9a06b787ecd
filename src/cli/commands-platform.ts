import { existsSync, unlinkSync } from 'node:fs';
import type { Command } from 'commander';
import { writeFileAtomic } from '../lib/home.js';
import { RESOURCES } from '../identity/tokens.js';
import { createNames } from '../lib/names.js';
import { CliContext, CliError } from './client.js';
import { action, parseIntArg } from './run.js';
import { API_VERSIONS, Arm, armOf, parseArmId, TYPES, withGroup, type ScopeOptions } from './arm.js';

/** Flattens a managed identity the way `az identity create` prints it. */
function flatIdentity(r: any) {
  return {
    id: r.id, name: r.name, resourceGroup: parseArmId(r.id)?.resourceGroup, location: r.location, type: r.type,
    clientId: r.properties.clientId, principalId: r.properties.principalId, tenantId: r.properties.tenantId,
    ...(r.clientSecret ? { clientSecret: r.clientSecret } : {}),
  };
}

export function registerPlatformCommands(program: Command): void {
  program
    .command('up')
    .description('start pgbyok (identity, management API and vaults) in the foreground until SIGTERM/SIGINT')
    .option('--port <port>', 'platform HTTPS port (default: chosen at first start and kept)')
    .option('--location <region>', 'default region for new resources', undefined)
    .action(async function (this: Command) {
      const opts = this.optsWithGlobals() as { home?: string; port?: string; location?: string };
      const ctx = new CliContext(opts.home);
      const { startPlatform } = await import('../platform.js');
      const { ConfigError } = await import('../lib/config.js');
      const { HomeLockedError } = await import('../lib/home-lock.js');
      let platform;
      try {
        platform = await startPlatform({ home: ctx.paths.root, port: parseIntArg(opts.port, '--port'), location: opts.location });
      } catch (e) {
        if (e instanceof ConfigError || e instanceof HomeLockedError) throw new CliError(e.message, 2);
        throw e;
      }
      process.stdout.write(
        [
          'pgbyok is up.',
          `  authority host:   ${platform.origin}`,
          `  management url:   ${platform.origin}`,
          `  vaults:           ${platform.names.vaultUri('NAME')} (one port for every vault)`,
          `  tenant:           ${platform.settings.defaultTenantId}`,
          `  CA certificate:   ${platform.paths.caCert}`,
          `                    export NODE_EXTRA_CA_CERTS=${platform.paths.caCert}`,
          `  admin credential: ${platform.paths.adminCredential} (0600)`,
          `  logs:             ${platform.paths.logs}/pgbyok.log`,
          'Stop with Ctrl-C or SIGTERM.',
          '',
        ].join('\n'),
      );
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await platform.close();
      process.stdout.write('pgbyok stopped.\n');
    });

  program
    .command('status')
    .description('show whether pgbyok is serving, and where (exit 0 only when it is)')
    .action(action(async (ctx) => {
      const s = ctx.settings;
      let res;
      try {
        res = await ctx.raw({ method: 'GET', url: `${ctx.origin}/health` });
      } catch (e) {
        throw new CliError(`pgbyok is not running (home ${ctx.paths.root}): ${(e as Error).message}`, 3);
      }
      if (res.status !== 200) throw new CliError(`pgbyok answered HTTP ${res.status} on /health`, 3);
      return {
        status: 'Running', authorityHost: ctx.origin, managementUrl: ctx.origin, tenantId: s.defaultTenantId,
        ...(s.domain && s.vaultPort ? { vaultUriPattern: createNames(s.domain, s.vaultPort).vaultUri('NAME') } : {}),
        caCertPath: ctx.paths.caCert, adminCredentialPath: ctx.paths.adminCredential, home: ctx.paths.root,
      };
    }));

  program
    .command('login')
    .description('act as another principal (service principal or managed identity) from now on')
    .requiredOption('--client-id <id>', 'client (application) id')
    .requiredOption('--client-secret <secret>', 'client secret')
    .option('--tenant <id>', 'tenant id (default: the default tenant)')
    .action(action<{ clientId: string; clientSecret: string; tenant?: string }>(async (ctx, o) => {
      const cred = { tenantId: o.tenant ?? ctx.settings.defaultTenantId, clientId: o.clientId, clientSecret: o.clientSecret };
      await ctx.token(RESOURCES.management, cred);
      writeFileAtomic(ctx.paths.cliProfile, JSON.stringify(cred, null, 2) + '\n', 0o600);
      return ctx.mgmt('GET', '/tenants/self');
    }));

  program
    .command('logout')
    .description('go back to acting as the bootstrap administrator')
    .action(action(async (ctx) => {
      if (existsSync(ctx.paths.cliProfile)) unlinkSync(ctx.paths.cliProfile);
      return undefined;
    }));

  const tenant = program.command('tenant').description('tenants (directories)');
  tenant.command('create').description('create a tenant with its own Owner service principal (secret shown once)')
    .requiredOption('--name <name>')
    .action(action<{ name: string }>(async (ctx, o) => ctx.mgmt('POST', '/tenants', { name: o.name })));
  tenant.command('list').action(action(async (ctx) => (await ctx.mgmt('GET', '/tenants')).value));

  const identity = program.command('identity').description('user-assigned managed identities');
  const ID = TYPES.identity;
  const idApi = API_VERSIONS.managedIdentity;
  withGroup(identity.command('create').description('create an identity; its client secret is printed once'))
    .requiredOption('--name <name>')
    .option('-l, --location <region>')
    .action(action<ScopeOptions & { name: string; location?: string }>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      const location = await arm.location(o.location);
      const group = await arm.groupForCreate(location);
      return flatIdentity(await arm.call('PUT', Arm.path(group, ID, o.name), idApi, { location }));
    }));
  withGroup(identity.command('list')).action(action<ScopeOptions>(async (ctx, o) => {
    const arm = armOf(ctx, o);
    return (await arm.call('GET', arm.listPath(ID), idApi)).value.map(flatIdentity);
  }, ['name', 'resourceGroup', 'location', 'clientId', 'principalId']));
  withGroup(identity.command('show')).requiredOption('--name <name>').action(action<ScopeOptions & { name: string }>(async (ctx, o) => {
    const arm = armOf(ctx, o);
    return flatIdentity(await arm.call('GET', await arm.pathOf(ID, o.name), idApi));
  }));
  withGroup(identity.command('delete').description('delete an identity; its tokens stop working at once'))
    .requiredOption('--name <name>')
    .action(action<ScopeOptions & { name: string }>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      await arm.call('DELETE', await arm.pathOf(ID, o.name), idApi);
      return undefined;
    }));

  const sp = program.command('sp').description('service principals (applications with a secret)');
  sp.command('create').description('create a service principal; its password is printed once')
    .requiredOption('--name <name>')
    .action(action<{ name: string }>(async (ctx, o) => {
      const r = await ctx.mgmt('POST', 'servicePrincipals', { displayName: o.name });
      return { appId: r.appId, displayName: r.displayName, objectId: r.id, password: r.password, tenant: r.appOwnerOrganizationId };
    }));
  sp.command('list').action(action(async (ctx) => (await ctx.mgmt('GET', 'servicePrincipals')).value, ['displayName', 'appId', 'id']));
  sp.command('delete').requiredOption('--id <objectIdOrAppIdOrName>').action(action<{ id: string }>(async (ctx, o) => {
    await ctx.mgmt('DELETE', `servicePrincipals/${encodeURIComponent(o.id)}`);
    return undefined;
  }));

  const role = program.command('role').description('role assignments (Owner, Security Officer, DBA, System Administrator)');
  role.command('assign').requiredOption('--assignee <objectIdOrClientIdOrName>').requiredOption('--role <role>')
    .action(action<{ assignee: string; role: string }>(async (ctx, o) =>
      ctx.mgmt('POST', 'providers/Microsoft.Authorization/roleAssignments', { properties: { principalId: o.assignee, roleDefinitionName: o.role } })));
  role.command('list').action(action(async (ctx) => (await ctx.mgmt('GET', 'providers/Microsoft.Authorization/roleAssignments')).value,
    ['name', 'properties.principalId', 'properties.roleDefinitionName']));
  role.command('delete').requiredOption('--id <assignmentId>').action(action<{ id: string }>(async (ctx, o) => {
    await ctx.mgmt('DELETE', `providers/Microsoft.Authorization/roleAssignments/${encodeURIComponent(o.id.replace(/^.*\//, ''))}`);
    return undefined;
  }));

  const audit = program.command('audit').description('the tamper-evident audit log of vault and management requests');
  audit.command('list')
    .option('--vault-name <name>').option('--caller <objectId>').option('--operation <op>', 'e.g. KeyUnwrap')
    .option('--result <result>', 'Success or Failure').option('--key <name>').option('--since <iso>').option('--top <n>', 'most recent N records', '100')
    .action(action<{ vaultName?: string; caller?: string; operation?: string; result?: string; key?: string; since?: string; top: string }>(async (ctx, o) => {
      const q = new URLSearchParams();
      const add = (k: string, v?: string) => v !== undefined && q.set(k, v);
      add('vault', o.vaultName); add('caller', o.caller); add('operation', o.operation); add('result', o.result); add('key', o.key); add('since', o.since);
      add('top', String(parseIntArg(o.top, '--top')));
      return (await ctx.mgmt('GET', `providers/Microsoft.KeyVault/auditEvents?${q}`)).value;
    }, ['seq', 'time', 'operation', 'vault', 'key', 'callerName', 'result', 'errorCode']));
  audit.command('verify').description('check the hash chain; exit 1 if a record was edited, removed or reordered')
    .action(action(async (ctx) => {
      const r = await ctx.mgmt('POST', 'providers/Microsoft.KeyVault/auditEvents/verify');
      if (!r.valid) process.exitCode = 1;
      return r;
    }));
}
