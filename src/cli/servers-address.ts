import { CliContext, CliError } from './client.js';
import { Arm, armOf, parseArmId, TYPES, type ScopeOptions } from './arm.js';

const FS = 'providers/Microsoft.DBforPostgreSQL/flexibleServers';
const enc = encodeURIComponent;

/**
 * THE switch for servers: false while the platform serves flexibleServers on the tenant path only
 * (`/tenants/{tid}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{name}`). Set it to true once servers
 * answer at `/subscriptions/{sub}/resourceGroups/{rg}/providers/...` (branch `servers`): every server command
 * (parameters, backups, replicas, restores included) then addresses servers there, honours -g and the
 * configured default group, finds a server's group by name, and passes --identity as the identity's ARM id.
 */
export const SERVERS_ON_ARM = true;

/** Where servers are, for one command run: the only code that knows which path servers answer on. */
export function serverAddress(ctx: CliContext, o: ScopeOptions) {
  const arm = armOf(ctx, o);
  if (!SERVERS_ON_ARM && o.resourceGroup) {
    throw new CliError("Servers are not in resource groups on this platform yet; omit --resource-group (they sit in their location's group pgbyok-<location>).");
  }
  const tenantPath = (name: string) => `${FS}/${enc(name)}`;
  return {
    /** An existing server (for ctx.mgmt: relative to the tenant, or an absolute ARM path). */
    async path(name: string): Promise<string> {
      return SERVERS_ON_ARM ? arm.idOf(await arm.pathOf(TYPES.server, name)) : tenantPath(name);
    },
    /** Where a new server is PUT: its group is -g, the default, else pgbyok-<location>. */
    async createPath(name: string, location: string): Promise<string> {
      return SERVERS_ON_ARM ? arm.idOf(Arm.path(await arm.groupForCreate(location), TYPES.server, name)) : tenantPath(name);
    },
    async listPath(): Promise<string> {
      return SERVERS_ON_ARM ? arm.idOf(arm.listPath(TYPES.server)) : FS;
    },
    /** Another server named by a command (a source): a resource id as given, else found by name in any group. */
    async sourcePath(ref: string): Promise<string> {
      if (ref.startsWith('/')) return ref;
      return SERVERS_ON_ARM ? arm.idOf(Arm.path(await arm.lookupGroup(TYPES.server, ref), TYPES.server, ref)) : tenantPath(ref);
    },
    /** The resource id a create sends as sourceServerResourceId. */
    async sourceId(ref: string): Promise<string> {
      if (ref.startsWith('/')) return ref;
      return SERVERS_ON_ARM ? this.sourcePath(ref) : `/tenants/${ctx.tenantId}/${tenantPath(ref)}`;
    },
    /** An identity as servers take it: on ARM paths its ARM id (looked up by name); until then its name or tenant-path id. */
    async identity(ref: string | undefined): Promise<string | undefined> {
      if (ref === undefined) return undefined;
      if (SERVERS_ON_ARM) {
        if (ref.startsWith('/')) return ref;
        try {
          return await arm.idOf(Arm.path(await arm.lookupGroup(TYPES.identity, ref), TYPES.identity, ref));
        } catch (e) {
          // Not found by name: the server validates it and says why (IdentityNotFound), as it would for an id.
          if (e instanceof CliError && e.exitCode === 3) return ref;
          throw e;
        }
      }
      return parseArmId(ref)?.name ?? ref;
    },
  };
}
export type ServerAddress = ReturnType<typeof serverAddress>;
