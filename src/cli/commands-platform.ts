import { existsSync, unlinkSync } from 'node:fs';
import type { Command } from 'commander';
import { originOf, readSettings, writeFileAtomic } from '../lib/home.js';
import { RESOURCES } from '../identity/tokens.js';
import { createNames } from '../lib/names.js';
import { CliContext, CliError } from './client.js';
import { action, parseIntArg, requireOutputFormat, type GlobalOptions } from './run.js';
import { API_VERSIONS, Arm, armOf, parseArmId, TYPES, withGroup, type ScopeOptions } from './arm.js';

/** Flattens a managed identity the way `az identity create` prints it. */
function flatIdentity(r: any) {
  return {
    id: r.id, name: r.name, resourceGroup: parseArmId(r.id)?.resourceGroup, location: r.location, type: r.type,
    clientId: r.properties.clientId, principalId: r.properties.principalId, tenantId: r.properties.tenantId,
    ...(r.clientSecret ? { clientSecret: r.clientSecret } : {}),
  };
}

/** The settings from the environment; a bad one stops the command with exit 2, naming it. */
async function settingsOrExit() {
  const { ConfigError, loadConfig } = await import('../lib/config.js');
  try {
    return loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.message, 2);
    throw e;
  }
}

export function registerPlatformCommands(program: Command): void {
  program
    .command('up')
    .description('start pgbyok (identity, management API and vaults) in the foreground until SIGTERM/SIGINT; it first checks what `pgbyok doctor` checks')
    .option('--port <port>', 'platform HTTPS port (default: chosen at first start and kept)')
    .option('--location <region>', 'default region for new resources', undefined)
    .option('--vaults-only', 'serve vaults and managed HSMs without PostgreSQL servers: start without what servers need, and create none (also PGBYOK_VAULTS_ONLY=1)')
    .action(async function (this: Command) {
      const opts = this.optsWithGlobals() as { home?: string; port?: string; location?: string; vaultsOnly?: boolean };
      const ctx = new CliContext(opts.home);
      const { startPlatform } = await import('../platform.js');
      const { HomeLockedError } = await import('../lib/home-lock.js');
      const { runChecks } = await import('../doctor/checks.js');
      const { upRefusal, vaultsOnlyNotice } = await import('../doctor/report.js');
      const { realProbe } = await import('../doctor/probe.js');
      const config = await settingsOrExit();
      const port = parseIntArg(opts.port, '--port');
      const vaultsOnly = !!opts.vaultsOnly || config.PGBYOK_VAULTS_ONLY;
      // The doctor's checks, without installing anything: a start that cannot do its job stops here, saying why.
      const results = await runChecks({ probe: realProbe, home: ctx.paths.root, config, vaultsOnly, portFlag: port });
      const refusal = upRefusal(results);
      if (refusal) throw new CliError(refusal, 1);
      let platform;
      try {
        platform = await startPlatform({ home: ctx.paths.root, port, location: opts.location, config, vaultsOnly });
      } catch (e) {
        if (e instanceof HomeLockedError) throw new CliError(e.message, 2);
        throw e;
      }
      process.stdout.write(
        [
          ...(vaultsOnly ? [vaultsOnlyNotice(results)] : []),
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
    .command('doctor')
    .description('check every prerequisite of pgbyok and name the fix of each one missing (exit 0 when all that is needed is there, 1 otherwise)')
    .option('--fix', 'install what is missing (Debian packages, non-interactively, and pgbyok\'s PostgreSQL module), then check again; as root')
    .option('--vaults-only', 'check only what a platform that serves vaults and managed HSMs needs (as `pgbyok up --vaults-only`)')
    .action(async function (this: Command) {
      const opts = this.optsWithGlobals() as GlobalOptions & { fix?: boolean; vaultsOnly?: boolean };
      requireOutputFormat(opts.output);
      const { runChecks, failing } = await import('../doctor/checks.js');
      const { reportJson, reportLines } = await import('../doctor/report.js');
      const { realProbe } = await import('../doctor/probe.js');
      const { fixMissing, realRunner, REPO_ROOT } = await import('../doctor/fix.js');
      const config = await settingsOrExit();
      const input = { probe: realProbe, home: new CliContext(opts.home).paths.root, config, vaultsOnly: !!opts.vaultsOnly || config.PGBYOK_VAULTS_ONLY };
      // A human report unless -o json was asked for (the CLI's default output is JSON for every other command).
      const json = opts.output === 'json' && this.getOptionValueSourceWithGlobals('output') !== 'default';
      const show = (results: Awaited<ReturnType<typeof runChecks>>) => {
        if (opts.output === 'none') return;
        process.stdout.write(json ? JSON.stringify(reportJson(results), null, 2) + '\n' : reportLines(results).join('\n') + '\n');
      };
      let results = await runChecks(input);
      if (opts.fix) {
        if (realProbe.uid() !== 0) {
          show(results);
          throw new CliError('pgbyok doctor --fix needs root: it installs Debian packages with apt-get. Run it as root (sudo pgbyok doctor --fix).', 1);
        }
        const problems = fixMissing(results, { probe: realProbe, run: realRunner, repoRoot: REPO_ROOT, log: (line) => process.stderr.write(`${line}\n`) });
        for (const p of problems) process.stderr.write(`pgbyok doctor --fix: ${p}\n`);
        results = await runChecks(input);
      }
      show(results);
      if (failing(results).length > 0) process.exitCode = 1;
    });

  program
    .command('status')
    .description('show whether pgbyok is serving, and where: exit 0 when it is and this CLI is signed in, 3 when it is not running, 4 when the CLI has no usable credential')
    .action(action(async (ctx) => {
      const s = readSettings(ctx.paths);
      if (!s) throw new CliError(`pgbyok is not running (home ${ctx.paths.root} has never been started): start it with 'pgbyok up'`, 3);
      const origin = originOf(s.host, s.port);
      let res;
      try {
        res = await ctx.raw({ method: 'GET', url: `${origin}/health` });
      } catch (e) {
        const refused = e instanceof CliError && e.exitCode === 3;
        throw new CliError(`pgbyok is not running (no platform at ${origin}${refused ? '' : `: ${(e as Error).message}`}): start it with 'pgbyok up'`, 3);
      }
      if (res.status !== 200) throw new CliError(`pgbyok answered HTTP ${res.status} on ${origin}/health`, 3);
      // It serves: can this CLI act? (No credential, or one the platform refuses, is "not signed in".)
      let cred;
      try {
        cred = ctx.credential();
        await ctx.token(RESOURCES.management, cred);
      } catch (e) {
        throw new CliError(`pgbyok is running at ${origin}, but this CLI is not signed in: ${(e as Error).message}`, 4);
      }
      return {
        status: 'Running', authorityHost: origin, managementUrl: origin, tenantId: s.defaultTenantId, signedInAs: cred.clientId,
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
