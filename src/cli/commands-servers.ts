import { randomBytes, randomInt } from 'node:crypto';
import type { Command } from 'commander';
import { CliContext, CliError } from './client.js';
import { registerParameterCommands } from './commands-parameters.js';
import { action, parseIntArg } from './run.js';
import { armOf, withGroup, withResourceGroup, type ScopeOptions } from './arm.js';
import { serverAddress } from './servers-address.js';

const INSIGHTS = 'providers/Microsoft.Insights';
const enc = encodeURIComponent;

/** A password that meets Azure's rules, for when the user does not choose one (printed once). */
function generatePassword(): string {
  const pick = (set: string) => set[randomInt(set.length)];
  const chars = [pick('ABCDEFGHJKLMNPQRSTUVWXYZ'), pick('abcdefghijkmnopqrstuvwxyz'), pick('23456789'), pick('!#%+-=_')];
  return chars.join('') + randomBytes(15).toString('base64url');
}

/** Runs a long operation: waits for it (with progress) unless --no-wait, then shows the server. */
async function longOperation(ctx: CliContext, res: { body: any; headers: Record<string, any> }, name: string, label: string, wait: boolean, show: string | false) {
  const url = res.headers['azure-asyncoperation'] as string;
  if (!wait) return res.body && Object.keys(res.body).length ? withResourceGroup(res.body) : { operation: url };
  const op = await ctx.waitForOperation(url, label);
  if (op.status !== 'Succeeded') throw new CliError(`${label} of ${name} failed: ${op.error?.message ?? op.status}`);
  return show ? withResourceGroup(await ctx.mgmt('GET', show)) : undefined;
}

export function registerServerCommands(program: Command): void {
  const server = program.command('server').description('PostgreSQL servers, encrypted at rest (DBA)');

  withGroup(server.command('create'))
    .requiredOption('--name <name>').option('-l, --location <region>', "region (default: 'configure --defaults location=', else the platform's)")
    .option('--admin-user <login>', 'administrator login', 'pgadmin')
    .option('--admin-password <password>', 'administrator password (generated and printed once if omitted)')
    .option('--storage-size <GiB>', 'storage size in GiB', '32')
    .option('--version <version>', 'PostgreSQL major version', '15')
    .option('--key <keyUri>', 'customer-managed key: a key URI (versionless follows rotation, versioned stays pinned)')
    .option('--identity <identity>', 'user-assigned identity (name or resource id) that reaches the key')
    .option('--backup-retention <days>', 'days backups are kept (7-35)', '7')
    .option('--geo-redundant-backup <Enabled|Disabled>', 'copy backups to the paired region', 'Disabled')
    .option('--geo-backup-key <keyUri>', 'key in a vault of the paired region, for the geo copies')
    .option('--geo-backup-identity <identity>', 'identity of the paired region (not the primary identity) that reaches the geo key')
    .option('--no-wait', 'return at once instead of waiting for Ready')
    .action(action<ScopeOptions & { name: string; location?: string; adminUser: string; adminPassword?: string; storageSize: string; version: string; key?: string; identity?: string; backupRetention: string; geoRedundantBackup: string; geoBackupKey?: string; geoBackupIdentity?: string; wait: boolean }>(async (ctx, o) => {
      if (!['Enabled', 'Disabled'].includes(o.geoRedundantBackup)) throw new CliError('--geo-redundant-backup is Enabled or Disabled.');
      const password = o.adminPassword ?? generatePassword();
      const srv = serverAddress(ctx, o);
      const location = await armOf(ctx, o).location(o.location);
      const [identity, geoIdentity] = [await srv.identity(o.identity), await srv.identity(o.geoBackupIdentity)];
      const path = await srv.createPath(o.name, location);
      const res = await ctx.mgmtFull('PUT', path, {
        location,
        // As Azure asks: every identity the server uses (the geo-backup one too) is listed in its identity block.
        ...(identity ? { identity: { type: 'UserAssigned', userAssignedIdentities: Object.fromEntries([identity, geoIdentity].filter(Boolean).map((id) => [id, {}])) } } : {}),
        properties: {
          version: o.version,
          administratorLogin: o.adminUser,
          administratorLoginPassword: password,
          storage: { storageSizeGB: parseIntArg(o.storageSize, '--storage-size') },
          backup: { backupRetentionDays: parseIntArg(o.backupRetention, '--backup-retention'), geoRedundantBackup: o.geoRedundantBackup },
          dataEncryption: {
            ...(o.key || identity ? { type: 'AzureKeyVault', primaryKeyURI: o.key, primaryUserAssignedIdentityId: identity } : { type: 'SystemManaged' }),
            ...(o.geoBackupKey ? { geoBackupKeyURI: o.geoBackupKey } : {}),
            ...(geoIdentity ? { geoBackupUserAssignedIdentityId: geoIdentity } : {}),
          },
        },
      });
      // A generated password is shown whatever the output format (a table has no column for it); nothing else keeps it.
      if (!o.adminPassword) process.stderr.write(`Generated administrator password for ${o.adminUser} (shown once; reset it with pgbyok server update --admin-password): ${password}\n`);
      const result = await longOperation(ctx, res, o.name, 'Provisioning', o.wait, path);
      return o.adminPassword ? result : { ...result, administratorLoginPassword: password };
    }));

  const ops = server.command('operation').description('the durable operations of your servers, with their steps');
  ops.command('list').option('--top <n>', 'most recent N', '50').action(action<{ top: string }>(async (ctx, o) =>
    (await ctx.mgmt('GET', `providers/Microsoft.DBforPostgreSQL/operations?top=${parseIntArg(o.top, '--top')}`)).value,
  ['name', 'operation', 'resource', 'status', 'startTime', 'endTime']));
  ops.command('show').requiredOption('--id <id>').action(action<{ id: string }>(async (ctx, o) =>
    ctx.mgmt('GET', `providers/Microsoft.DBforPostgreSQL/operations/${enc(o.id)}`)));

  withGroup(server.command('show')).requiredOption('--name <name>').action(action<ScopeOptions & { name: string }>(async (ctx, o) =>
    withResourceGroup(await ctx.mgmt('GET', await serverAddress(ctx, o).path(o.name)))));
  withGroup(server.command('list')).action(action<ScopeOptions>(async (ctx, o) => (await ctx.mgmt('GET', await serverAddress(ctx, o).listPath())).value.map(withResourceGroup),
    ['name', 'location', 'properties.state', 'properties.port', 'properties.dataEncryption.type', 'properties.dataEncryption.primaryEncryptionKeyStatus']));

  withGroup(server.command('update')).requiredOption('--name <name>')
    .option('--key <keyUri>', 'change (or add) the customer-managed key; the DEK is re-wrapped, no data is rewritten')
    .option('--identity <identity>', 'change the identity that reaches the key')
    .option('--storage-size <GiB>', 'grow the storage')
    .option('--remove-key', 'ask to remove the customer key (refused: restore to a server without one instead)')
    .option('--admin-password <password>', 'reset the administrator password')
    .option('--no-wait')
    .action(action<ScopeOptions & { name: string; key?: string; identity?: string; storageSize?: string; removeKey?: boolean; adminPassword?: string; wait: boolean }>(async (ctx, o) => {
      const srv = serverAddress(ctx, o);
      const path = await srv.path(o.name);
      const identity = await srv.identity(o.identity);
      const res = await ctx.mgmtFull('PATCH', path, {
        properties: {
          ...(o.adminPassword !== undefined ? { administratorLoginPassword: o.adminPassword } : {}),
          ...(o.storageSize ? { storage: { storageSizeGB: parseIntArg(o.storageSize, '--storage-size') } } : {}),
          ...(o.removeKey ? { dataEncryption: { type: 'SystemManaged' } } : {}),
          ...(o.key || identity ? { dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: o.key, primaryUserAssignedIdentityId: identity } } : {}),
        },
      });
      return longOperation(ctx, res, o.name, 'Updating', o.wait, path);
    }));

  for (const [verb, label] of [['stop', 'Stopping'], ['start', 'Starting'], ['restart', 'Restarting'], ['revalidate', 'Revalidating']] as const) {
    withGroup(server.command(verb)).requiredOption('--name <name>').option('--no-wait')
      .action(action<ScopeOptions & { name: string; wait: boolean }>(async (ctx, o) => {
        const path = await serverAddress(ctx, o).path(o.name);
        return longOperation(ctx, await ctx.mgmtFull('POST', `${path}/${verb}`), o.name, label, o.wait, path);
      }));
  }

  withGroup(server.command('delete').description('delete a server: its volume is destroyed and its wrapped DEK erased (crypto-shredding)'))
    .requiredOption('--name <name>').option('--yes', 'do not ask for confirmation').option('--no-wait')
    .action(action<ScopeOptions & { name: string; yes?: boolean; wait: boolean }>(async (ctx, o) => {
      const path = await serverAddress(ctx, o).path(o.name);
      if (!o.yes) {
        if (!process.stdin.isTTY) throw new CliError('Deleting a server destroys its data for good; confirm with --yes.');
        process.stderr.write(`Delete server ${o.name} and destroy its data for good? [y/N] `);
        const answer = await new Promise<string>((r) => process.stdin.once('data', (d) => r(String(d).trim())));
        process.stdin.pause();
        if (!/^y(es)?$/i.test(answer)) throw new CliError('Not deleted.');
      }
      return longOperation(ctx, await ctx.mgmtFull('DELETE', path), o.name, 'Deleting', o.wait, false);
    }));

  withGroup(server.command('show-connection-string')).requiredOption('--name <name>')
    .action(action<ScopeOptions & { name: string }>(async (ctx, o) => {
      const s = await ctx.mgmt('GET', await serverAddress(ctx, o).path(o.name));
      const host = s.properties.fullyQualifiedDomainName;
      const port = s.properties.port;
      const user = s.properties.administratorLogin;
      const ca = ctx.paths.caCert;
      return {
        connectionStrings: {
          psql: `psql "host=${host} port=${port} dbname=postgres user=${user} sslmode=verify-full sslrootcert=${ca}"`,
          libpq: `host=${host} port=${port} dbname=postgres user=${user} password={your_password} sslmode=verify-full sslrootcert=${ca}`,
          uri: `postgresql://${user}:{your_password}@${host}:${port}/postgres?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}`,
          jdbc: `jdbc:postgresql://${host}:${port}/postgres?user=${user}&password={your_password}&sslmode=verify-full&sslrootcert=${ca}`,
          node: `new pg.Client({ host: '${host}', port: ${port}, database: 'postgres', user: '${user}', password: '{your_password}', ssl: { ca: fs.readFileSync('${ca}') } })`,
        },
      };
    }));

  withGroup(server.command('restore').description('point-in-time restore into a new server (encrypted too: under the source key, or --key/--identity)'))
    .requiredOption('--source <server>', 'the server whose backups to restore').requiredOption('--name <name>', 'the new server')
    .option('--restore-time <iso>', 'restore to this time (default: the latest restorable time)')
    .option('--location <region>', 'region of the new server (default: the source\'s)')
    .option('--key <keyUri>').option('--identity <identity>')
    .option('--system-managed-key', 'encrypt the new server with a service-managed key (how a customer key is removed)')
    .option('--no-wait')
    .action(action<ScopeOptions & { source: string; name: string; restoreTime?: string; location?: string; key?: string; identity?: string; systemManagedKey?: boolean; wait: boolean }>(async (ctx, o) => {
      const srv = serverAddress(ctx, o);
      const location = o.location ?? (await ctx.mgmt('GET', await srv.sourcePath(o.source))).location;
      const [path, identity] = [await srv.createPath(o.name, location), await srv.identity(o.identity)];
      const res = await ctx.mgmtFull('PUT', path, {
        location,
        properties: {
          createMode: 'PointInTimeRestore',
          sourceServerResourceId: await srv.sourceId(o.source),
          ...(o.restoreTime ? { pointInTimeUTC: o.restoreTime } : {}),
          ...(o.systemManagedKey ? { dataEncryption: { type: 'SystemManaged' } } : {}),
          ...(o.key || identity ? { dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: o.key, primaryUserAssignedIdentityId: identity } } : {}),
        },
      });
      return longOperation(ctx, res, o.name, 'Restoring', o.wait, path);
    }));

  withGroup(server.command('geo-restore').description('restore from the geo-redundant copies, into a new server in the paired region'))
    .requiredOption('--source <server>').requiredOption('--name <name>')
    .option('--location <region>', 'region of the new server (default: the paired region)')
    .option('--key <keyUri>').option('--identity <identity>')
    .option('--no-wait')
    .action(action<ScopeOptions & { source: string; name: string; location?: string; key?: string; identity?: string; wait: boolean }>(async (ctx, o) => {
      const srv = serverAddress(ctx, o);
      const src = await ctx.mgmt('GET', await srv.sourcePath(o.source));
      const location = o.location ?? src.properties.backup.geoBackupRegion ?? src.location;
      const [path, identity] = [await srv.createPath(o.name, location), await srv.identity(o.identity)];
      const res = await ctx.mgmtFull('PUT', path, {
        location,
        properties: {
          createMode: 'GeoRestore',
          sourceServerResourceId: src.id,
          ...(o.key || identity ? { dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: o.key, primaryUserAssignedIdentityId: identity } } : {}),
        },
      });
      return longOperation(ctx, res, o.name, 'Geo-restoring', o.wait, path);
    }));

  const replica = server.command('replica').description('read replicas: streaming copies with their own volume, DEK and key');
  withGroup(replica.command('create')).requiredOption('--source <server>').requiredOption('--name <name>')
    .option('--location <region>', 'region of the replica (default: the source\'s)')
    .option('--key <keyUri>', 'the replica\'s key (required in another region: a vault of that region)')
    .option('--identity <identity>', 'the replica\'s identity (required in another region: an identity of that region)')
    .option('--no-wait')
    .action(action<ScopeOptions & { source: string; name: string; location?: string; key?: string; identity?: string; wait: boolean }>(async (ctx, o) => {
      const srv = serverAddress(ctx, o);
      const location = o.location ?? (await ctx.mgmt('GET', await srv.sourcePath(o.source))).location;
      const [path, identity] = [await srv.createPath(o.name, location), await srv.identity(o.identity)];
      const res = await ctx.mgmtFull('PUT', path, {
        location,
        properties: {
          createMode: 'Replica',
          sourceServerResourceId: await srv.sourceId(o.source),
          ...(o.key || identity ? { dataEncryption: { type: 'AzureKeyVault', primaryKeyURI: o.key, primaryUserAssignedIdentityId: identity } } : {}),
        },
      });
      return longOperation(ctx, res, o.name, 'Creating replica', o.wait, path);
    }));
  withGroup(replica.command('list')).requiredOption('--name <server>', 'the primary').action(action<ScopeOptions & { name: string }>(async (ctx, o) =>
    (await ctx.mgmt('GET', `${await serverAddress(ctx, o).path(o.name)}/replicas`)).value.map(withResourceGroup), ['name', 'location', 'properties.state', 'properties.port', 'properties.replicationRole']));
  withGroup(replica.command('promote')).requiredOption('--name <replica>').option('--no-wait')
    .action(action<ScopeOptions & { name: string; wait: boolean }>(async (ctx, o) => {
      const path = await serverAddress(ctx, o).path(o.name);
      return longOperation(ctx, await ctx.mgmtFull('POST', `${path}/promote`), o.name, 'Promoting', o.wait, path);
    }));

  const backup = server.command('backup').description('encrypted full backups (WAL is archived continuously)');
  withGroup(backup.command('list')).requiredOption('--name <server>').action(action<ScopeOptions & { name: string }>(async (ctx, o) =>
    (await ctx.mgmt('GET', `${await serverAddress(ctx, o).path(o.name)}/backups`)).value, ['name', 'properties.completedTime', 'properties.sizeBytes', 'properties.encryptionKeyVersion']));
  withGroup(backup.command('create')).requiredOption('--name <server>').option('--no-wait')
    .action(action<ScopeOptions & { name: string; wait: boolean }>(async (ctx, o) => {
      const path = await serverAddress(ctx, o).path(o.name);
      await longOperation(ctx, await ctx.mgmtFull('POST', `${path}/backups`), o.name, 'Backing up', o.wait, false);
      return (await ctx.mgmt('GET', `${path}/backups`)).value.at(-1);
    }));

  registerParameterCommands(server);

  withGroup(server.command('health')).requiredOption('--name <name>').action(action<ScopeOptions & { name: string }>(async (ctx, o) =>
    ctx.mgmt('GET', `${await serverAddress(ctx, o).path(o.name)}/health`)));

  const activity = program.command('activity-log').description('who did what to which resource, and every key-access failure');
  activity.command('list').option('--resource <server>', 'a server name or resource id').option('--top <n>', 'most recent N', '50')
    .action(action<{ resource?: string; top: string }>(async (ctx, o) => {
      const q = new URLSearchParams({ top: String(parseIntArg(o.top, '--top')) });
      if (o.resource) q.set('resource', o.resource);
      return (await ctx.mgmt('GET', `${INSIGHTS}/eventtypes/management/values?${q}`)).value;
    }, ['time', 'operation', 'status', 'level', 'message']));

  const monitor = program.command('monitor').description('alerts on server and key events');
  const groups = monitor.command('action-group').description('where alerts go (webhooks)');
  groups.command('create').requiredOption('--name <name>').requiredOption('--webhook <urls...>')
    .action(action<{ name: string; webhook: string[] }>(async (ctx, o) =>
      ctx.mgmt('PUT', `${INSIGHTS}/actionGroups/${enc(o.name)}`, { properties: { webhookReceivers: o.webhook.map((serviceUri, i) => ({ name: `webhook${i + 1}`, serviceUri })) } })));
  groups.command('list').action(action(async (ctx) => (await ctx.mgmt('GET', `${INSIGHTS}/actionGroups`)).value));
  groups.command('delete').requiredOption('--name <name>').action(action<{ name: string }>(async (ctx, o) => {
    await ctx.mgmt('DELETE', `${INSIGHTS}/actionGroups/${enc(o.name)}`);
    return undefined;
  }));
  const alerts = monitor.command('alert').description('activity-log alert rules');
  alerts.command('create').requiredOption('--name <name>').requiredOption('--action-group <name>')
    .option('--condition <condition>', 'ServerInaccessible, KeyAccessFailure, ServerAvailable or Any', 'ServerInaccessible')
    .option('--server <name>', 'only this server (default: every server)')
    .action(action<{ name: string; actionGroup: string; condition: string; server?: string }>(async (ctx, o) =>
      ctx.mgmt('PUT', `${INSIGHTS}/activityLogAlerts/${enc(o.name)}`, { properties: { condition: o.condition, actionGroup: o.actionGroup, ...(o.server ? { serverName: o.server } : {}) } })));
  alerts.command('list').action(action(async (ctx) => (await ctx.mgmt('GET', `${INSIGHTS}/activityLogAlerts`)).value));
  alerts.command('delete').requiredOption('--name <name>').action(action<{ name: string }>(async (ctx, o) => {
    await ctx.mgmt('DELETE', `${INSIGHTS}/activityLogAlerts/${enc(o.name)}`);
    return undefined;
  }));

  const platform = program.command('platform').description('platform settings (system administrator)');
  const settings = platform.command('settings');
  settings.command('show').action(action(async (ctx) => ctx.mgmt('GET', 'platformSettings')));
  settings.command('update')
    .option('--key-monitor-interval <seconds>', 'how often every customer key is checked')
    .option('--vault-grace <seconds>', 'how long an unreachable vault is tolerated before servers go Inaccessible')
    .action(action<{ keyMonitorInterval?: string; vaultGrace?: string }>(async (ctx, o) => ctx.mgmt('PATCH', 'platformSettings', {
      ...(o.keyMonitorInterval ? { keyMonitorIntervalSeconds: parseIntArg(o.keyMonitorInterval, '--key-monitor-interval') } : {}),
      ...(o.vaultGrace ? { vaultUnreachableGraceSeconds: parseIntArg(o.vaultGrace, '--vault-grace') } : {}),
    })));
}
