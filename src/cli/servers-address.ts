import { CliContext, CliError } from './client.js';
import { Arm, armOf, TYPES, type ScopeOptions } from './arm.js';

/** Where servers are, for one command run: the only code that knows the path servers answer on (their group, -g or found by name). */
export function serverAddress(ctx: CliContext, o: ScopeOptions) {
  const arm = armOf(ctx, o);
  return {
    /** An existing server's ARM path. */
    async path(name: string): Promise<string> {
      return arm.idOf(await arm.pathOf(TYPES.server, name));
    },
    /** Where a new server is PUT: its group is -g, the default, else pgbyok-<location>. */
    async createPath(name: string, location: string): Promise<string> {
      return arm.idOf(Arm.path(await arm.groupForCreate(location), TYPES.server, name));
    },
    async listPath(): Promise<string> {
      return arm.idOf(arm.listPath(TYPES.server));
    },
    /** Another server named by a command (a source): a resource id as given, else found by name in any group. */
    async sourcePath(ref: string): Promise<string> {
      if (ref.startsWith('/')) return ref;
      return arm.idOf(Arm.path(await arm.lookupGroup(TYPES.server, ref), TYPES.server, ref));
    },
    /** The resource id a create sends as sourceServerResourceId. */
    async sourceId(ref: string): Promise<string> {
      return this.sourcePath(ref);
    },
    /** An identity as servers take it: its ARM id, looked up by name (a name not found goes as given, and the server says why). */
    async identity(ref: string | undefined): Promise<string | undefined> {
      if (ref === undefined || ref.startsWith('/')) return ref;
      try {
        return await arm.idOf(Arm.path(await arm.lookupGroup(TYPES.identity, ref), TYPES.identity, ref));
      } catch (e) {
        if (e instanceof CliError && e.exitCode === 3) return ref;
        throw e;
      }
    },
  };
}
