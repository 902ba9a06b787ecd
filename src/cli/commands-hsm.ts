import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import { normalizeScope, parseRoleDefinitionId } from '../hsm/local-rbac.js';
import { API_VERSIONS, Arm, armOf, defaultGroupName, parseArmId, withGroup, withResourceGroup, type ScopeOptions } from './arm.js';
import { CliContext, CliError } from './client.js';
import { asCli, registerSecurityDomainCommands } from './commands-hsm-domain.js';
import { action, parseBool, parseIntArg } from './run.js';

/**
 * `pgbyok hsm ...`: Managed HSMs as az has them (`az keyvault create --hsm-name`, `az keyvault role ...
 * --hsm-name`): the ARM resource (create, show, list, delete, list-deleted, recover, purge), its security
 * domain (commands-hsm-domain.ts) and its local RBAC on the data plane.
 */

const HSM = 'Microsoft.KeyVault/managedHSMs';
const DELETED = '/providers/Microsoft.KeyVault/deletedManagedHSMs';
const KV_API = API_VERSIONS.keyVault;
const RA = '/providers/Microsoft.Authorization/roleAssignments';
const RD = '/providers/Microsoft.Authorization/roleDefinitions';
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const enc = encodeURIComponent;

/** A local-RBAC scope in its canonical form (`/`, `/keys`, `/keys/{name}`), and its path prefix on the data plane. */
const scopeOf = (raw: string | undefined) => asCli(() => normalizeScope(raw ?? '/'));
const prefixOf = (scope: string) => (scope === '/' ? '' : scope.split('/').map(enc).join('/'));

/**
 * The object id of a principal named by object id, client id or name (a managed identity's name first, then a
 * service principal's display name), as the management plane resolves `--object-id` and `--assignee`: the
 * HSM's data plane takes object ids only, so the CLI resolves here.
 */
async function principalObjectId(ctx: CliContext, ref: string): Promise<string> {
  const sps = async () => (await ctx.mgmt('GET', 'servicePrincipals')).value as { id: string; appId: string; displayName: string }[];
  const ids = async () => (await ctx.mgmt('GET', 'providers/Microsoft.ManagedIdentity/userAssignedIdentities')).value as { name: string; properties: { clientId: string; principalId: string } }[];
  if (GUID.test(ref)) {
    const id = ref.toLowerCase();
    try {
      const [s, i] = await Promise.all([sps(), ids()]);
      return s.find((x) => x.appId.toLowerCase() === id)?.id ?? i.find((x) => x.properties.clientId.toLowerCase() === id)?.properties.principalId ?? id;
    } catch (e) {
      // A caller who may not list principals names them by object id.
      if (e instanceof CliError) return id;
      throw e;
    }
  }
  const lower = ref.toLowerCase();
  const identity = (await ids()).filter((x) => x.name.toLowerCase() === lower);
  const found = identity.length ? identity.map((x) => x.properties.principalId) : (await sps()).filter((x) => x.displayName.toLowerCase() === lower).map((x) => x.id);
  if (found.length === 0) throw new CliError(`No managed identity or service principal named '${ref}' exists in tenant ${ctx.tenantId}.`, 3);
  if (found.length > 1) throw new CliError(`${found.length} principals are named '${ref}' (${found.join(', ')}); name one by object id.`);
  return found[0];
}

type HsmOpts = { hsmName: string };
const hsmCall = (ctx: CliContext, o: HsmOpts, method: string, path: string, body?: unknown) => ctx.vault(ctx.hsmUri(o.hsmName), method, path, body);

/** A role named by its GUID, its id, or its roleName (e.g. "Managed HSM Crypto User"): the GUID. */
async function roleGuid(ctx: CliContext, o: HsmOpts, role: string): Promise<string> {
  if (GUID.test(role) || /\/roleDefinitions\/[^/]+$/i.test(role)) return asCli(() => parseRoleDefinitionId(role));
  const defs = (await hsmCall(ctx, o, 'GET', RD)).value as { name: string; properties: { roleName: string } }[];
  const d = defs.find((x) => x.properties.roleName.toLowerCase() === role.toLowerCase());
  if (!d) throw new CliError(`Managed HSM '${o.hsmName}' has no role '${role}'; its roles: ${defs.map((x) => x.properties.roleName).join(', ')}.`, 3);
  return d.name;
}

type Assignment = { id: string; name: string; properties: { scope: string; roleDefinitionId: string; principalId: string } };
type Filter = HsmOpts & { scope?: string; assignee?: string; assigneeObjectId?: string; role?: string };

/** The HSM's role assignments, those of one principal, at one scope and of one role when asked. */
async function assignments(ctx: CliContext, o: Filter): Promise<Assignment[]> {
  const scope = o.scope === undefined ? undefined : await scopeOf(o.scope);
  const who = o.assigneeObjectId ?? (o.assignee ? await principalObjectId(ctx, o.assignee) : undefined);
  const role = o.role ? await roleGuid(ctx, o, o.role) : undefined;
  const filter = who ? `?$filter=${enc(`principalId eq '${who}'`)}` : '';
  const all = (await hsmCall(ctx, o, 'GET', `${RA}${filter}`)).value as Assignment[];
  return all.filter((a) => (!scope || a.properties.scope.toLowerCase() === scope.toLowerCase())
    && (!role || parseRoleDefinitionId(a.properties.roleDefinitionId) === role));
}

function registerRoleCommands(hsm: Command): void {
  const role = hsm.command('role').description("the HSM's local RBAC (az keyvault role ... --hsm-name)");
  const assignment = role.command('assignment').description('role assignments at /, /keys or /keys/{name}');
  const withHsm = (cmd: Command) => cmd.requiredOption('--hsm-name <name>', 'the managed HSM');
  const assigneeOptions = (cmd: Command) => cmd.option('--assignee <idOrName>', 'object id, client id or name of a managed identity or service principal')
    .option('--assignee-object-id <oid>', 'the object id, not looked up');
  const columns = ['name', 'properties.scope', 'properties.principalId', 'properties.roleDefinitionId'];

  assigneeOptions(withHsm(assignment.command('create').description('assign a role to a principal at a scope')))
    .requiredOption('--role <role>', 'a role name, e.g. "Managed HSM Crypto User", or its GUID')
    .option('--scope <scope>', "'/' (the whole HSM), '/keys' or '/keys/{name}'", '/')
    .option('--name <guid>', 'the assignment\'s name (default: a new GUID)')
    .action(action<Filter & { role: string; scope: string; name?: string }>(async (ctx, o) => {
      if (!o.assignee && !o.assigneeObjectId) throw new CliError('Name the principal with --assignee (or --assignee-object-id).');
      const scope = await scopeOf(o.scope);
      const principalId = o.assigneeObjectId ?? await principalObjectId(ctx, o.assignee!);
      const roleDefinitionId = await roleGuid(ctx, o, o.role);
      return hsmCall(ctx, o, 'PUT', `${prefixOf(scope)}${RA}/${enc(o.name ?? randomUUID())}`, { properties: { roleDefinitionId, principalId } });
    }));
  assigneeOptions(withHsm(assignment.command('list').description('list role assignments (all, or of a principal, scope or role)')))
    .option('--scope <scope>').option('--role <role>')
    .action(action<Filter>(async (ctx, o) => assignments(ctx, o), columns));
  assigneeOptions(withHsm(assignment.command('delete').description('delete an assignment by --name, or those of --assignee and --role (at --scope)')))
    .option('--name <guid>').option('--role <role>').option('--scope <scope>')
    .action(action<Filter & { name?: string }>(async (ctx, o) => {
      if (o.name) return [await hsmCall(ctx, o, 'DELETE', `${prefixOf(await scopeOf(o.scope))}${RA}/${enc(o.name)}`)];
      if (!(o.assignee || o.assigneeObjectId) || !o.role) throw new CliError('Name the assignment with --name, or with --assignee and --role (and --scope).');
      const found = await assignments(ctx, o);
      if (!found.length) throw new CliError(`No role assignment of '${o.role}' to '${o.assignee ?? o.assigneeObjectId}'${o.scope ? ` at '${o.scope}'` : ''} exists on managed HSM '${o.hsmName}'.`, 3);
      const deleted = [];
      for (const a of found) deleted.push(await hsmCall(ctx, o, 'DELETE', `${prefixOf(a.properties.scope)}${RA}/${enc(a.name)}`));
      return deleted;
    }, columns));

  const definition = role.command('definition').description('role definitions: the built-in Managed HSM roles and custom ones');
  withHsm(definition.command('list')).option('--custom-role-only', 'only custom roles')
    .action(action<HsmOpts & { customRoleOnly?: boolean }>(async (ctx, o) =>
      ((await hsmCall(ctx, o, 'GET', RD)).value as { properties: { type: string } }[]).filter((d) => !o.customRoleOnly || d.properties.type === 'CustomRole'),
    ['name', 'properties.roleName', 'properties.type']));
  withHsm(definition.command('show')).requiredOption('--name <guidOrRoleName>')
    .action(action<HsmOpts & { name: string }>(async (ctx, o) => hsmCall(ctx, o, 'GET', `${RD}/${await roleGuid(ctx, o, o.name)}`)));
}

export function registerHsmCommands(program: Command): void {
  const hsm = program.command('hsm').description('managed HSMs (security officer): keys in an HSM, a security domain, local RBAC');
  withGroup(hsm.command('create').description('create a managed HSM (NotActivated until its security domain is downloaded)'))
    .requiredOption('--name <name>')
    .requiredOption('--administrators <oids...>', 'initial administrators: object ids (or client ids or names)')
    .option('-l, --location <region>', "region (default: 'configure --defaults location=', else the group's, else the platform's)")
    .option('--retention-days <days>', 'soft-delete retention, 7-90', '90')
    .option('--enable-purge-protection <bool>', 'forbid purging before the retention ends (default true, as in Azure)')
    .option('--sku <sku>', 'Standard_B1 or Custom_B32', 'Standard_B1')
    .option('--public-network-access <Enabled|Disabled>')
    .action(action<ScopeOptions & { name: string; administrators: string[]; location?: string; retentionDays: string; enablePurgeProtection?: string; sku: string; publicNetworkAccess?: string }>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      const location = await arm.location(o.location);
      const group = await arm.groupForCreate(location);
      return withResourceGroup(await arm.call('PUT', Arm.path(group, HSM, o.name), KV_API, {
        location, sku: { family: 'B', name: o.sku },
        properties: {
          tenantId: ctx.tenantId, initialAdminObjectIds: o.administrators,
          softDeleteRetentionInDays: parseIntArg(o.retentionDays, '--retention-days'),
          enablePurgeProtection: parseBool(o.enablePurgeProtection, '--enable-purge-protection') ?? true,
          ...(o.publicNetworkAccess ? { publicNetworkAccess: o.publicNetworkAccess } : {}),
        },
      }));
    }));
  withGroup(hsm.command('show')).requiredOption('--name <name>').action(action<ScopeOptions & { name: string }>(async (ctx, o) => {
    const arm = armOf(ctx, o);
    return withResourceGroup(await arm.call('GET', await arm.pathOf(HSM, o.name), KV_API));
  }));
  withGroup(hsm.command('list')).action(action<ScopeOptions>(async (ctx, o) => {
    const arm = armOf(ctx, o);
    return (await arm.call('GET', arm.listPath(HSM), KV_API)).value.map(withResourceGroup);
  }, ['name', 'location', 'resourceGroup', 'properties.hsmUri', 'properties.securityDomainProperties.activationStatus']));
  withGroup(hsm.command('delete').description('soft-delete a managed HSM (recoverable until its purge date)')).requiredOption('--name <name>')
    .action(action<ScopeOptions & { name: string }>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      return arm.call('DELETE', await arm.pathOf(HSM, o.name), KV_API);
    }));
  hsm.command('list-deleted').action(action<ScopeOptions>(async (ctx, o) => (await armOf(ctx, o).call('GET', DELETED, KV_API)).value,
    ['name', 'properties.location', 'properties.deletionDate', 'properties.scheduledPurgeDate', 'properties.purgeProtectionEnabled']));
  const deleted = async (arm: Arm, name: string) => {
    const all = (await arm.call('GET', DELETED, KV_API)).value as any[];
    const h = all.find((x) => x.name.toLowerCase() === name.toLowerCase());
    if (!h) throw new CliError(`(ResourceNotFound) No soft-deleted managed HSM '${name}' exists in subscription ${await arm.subscriptionId()}.`, 3);
    return h;
  };
  withGroup(hsm.command('recover').description('recover a soft-deleted managed HSM into its group (PUT with createMode recover)'))
    .requiredOption('--name <name>').action(action<ScopeOptions & { name: string }>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      const gone = await deleted(arm, o.name);
      const location = gone.properties.location;
      let group = o.resourceGroup ?? parseArmId(gone.properties.mhsmId)?.resourceGroup;
      if (!group) group = await arm.groupForCreate(location);
      else if (group.toLowerCase() === defaultGroupName(location)) await arm.ensureGroup(group, location);
      return withResourceGroup(await arm.call('PUT', Arm.path(group, HSM, gone.name), KV_API, { location, properties: { createMode: 'recover' } }));
    }));
  hsm.command('purge').description('destroy a soft-deleted managed HSM and its keys (refused under purge protection)')
    .requiredOption('--name <name>').option('-l, --location <region>', 'where the deleted HSM was (default: found by name)')
    .action(action<ScopeOptions & { name: string; location?: string }>(async (ctx, o) => {
      const arm = armOf(ctx, o);
      const location = o.location ?? (await deleted(arm, o.name)).properties.location;
      await arm.call('POST', `/providers/Microsoft.KeyVault/locations/${enc(location)}/deletedManagedHSMs/${enc(o.name)}/purge`, KV_API);
      return undefined;
    }));
  registerSecurityDomainCommands(hsm);
  registerRoleCommands(hsm);
}
