import type { Volume } from '../storage/volume.js';
import type { ServerRuntime } from './runtime.js';
import type { Server, ServersRepo } from './servers.repo.js';

/**
 * A server's PostgreSQL with the server parameters its user set (stored in the platform's database), so
 * every start writes them and every successful start clears what awaited a restart. A replica takes its
 * primary's parameters under its own: a hot standby needs max_connections and the like at least as high.
 */
export function createServerPostgres(d: { runtime: ServerRuntime; repo: ServersRepo }) {
  const valuesOf = (s: Server): Record<string, string> => {
    const own = (id: string) => Object.fromEntries(d.repo.parameters(id).map((p) => [p.name, p.value]));
    const source = s.replicationRole === 'AsyncReplica' && s.sourceServer ? d.repo.byName(s.sourceServer) : undefined;
    return { ...(source ? own(source.id) : {}), ...own(s.id) };
  };
  return (s: Server, volume?: Volume) => d.runtime.pgOf(s, volume ?? d.runtime.volumeOf(s), {
    parameters: valuesOf(s),
    onStarted: () => d.repo.clearPendingRestart(s.id),
  });
}

export type ServerPostgres = ReturnType<typeof createServerPostgres>;
