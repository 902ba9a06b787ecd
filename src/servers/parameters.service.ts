import { errors } from '../lib/errors.js';
import { allowedValues, lookupParameter, normalizeValue, PARAMETERS, type ParameterSpec } from '../postgres/parameters.js';
import type { ServerPostgres } from './server-postgres.js';
import type { ServerEvent } from './model/state-machine.js';
import type { Operation } from './operations/operations.repo.js';
import type { Server, ServersRepo } from './servers.repo.js';

/**
 * Server parameters as a resource, as Azure's `configurations`: list, show and set the allow-listed
 * parameters. Values are stored in the platform's database and written to a conf file pgbyok owns; a
 * dynamic one is applied with a reload, a static one waits for the next start (pending restart). The
 * settings pgbyok manages are listed read-only and never set.
 */

export interface ParameterView {
  name: string;
  value: string;
  description: string;
  defaultValue: string;
  dataType: string;
  allowedValues: string;
  source: 'system-default' | 'user-override' | 'pgbyok-managed';
  isDynamicConfig: boolean;
  isReadOnly: boolean;
  isConfigPendingRestart: boolean;
  unit?: string;
}

export interface ParametersDeps {
  repo: ServersRepo;
  pgOf: ServerPostgres;
  requireServer: (tenantId: string, name: string) => Server;
  /** The state machine's answer for a verb (throws its 409). */
  allow: (s: Server, event: ServerEvent) => void;
  /** Opens the ParameterUpdate operation; `store` runs in the same transaction. */
  enqueue: (s: Server, caller: string, store: () => void) => Operation;
  activity: (s: Server, message: string, caller: string) => void;
}

export function createParametersService(d: ParametersDeps) {
  const stored = (s: Server) => new Map(d.repo.parameters(s.id).map((p) => [p.name, p]));

  const view = (spec: ParameterSpec, row?: { value: string; pendingRestart: boolean }): ParameterView => ({
    name: spec.name,
    value: row?.value ?? spec.defaultValue,
    description: spec.description,
    defaultValue: spec.defaultValue,
    dataType: spec.dataType,
    allowedValues: allowedValues(spec),
    source: row ? 'user-override' : 'system-default',
    isDynamicConfig: spec.dynamic,
    isReadOnly: false,
    isConfigPendingRestart: row?.pendingRestart ?? false,
    ...(spec.unit ? { unit: spec.unit } : {}),
  });

  const managedView = (name: string, value: string): ParameterView => ({
    name, value, description: 'Managed by pgbyok: set on the command line at every start; it cannot be changed.', defaultValue: value,
    dataType: 'String', allowedValues: value, source: 'pgbyok-managed', isDynamicConfig: false, isReadOnly: true, isConfigPendingRestart: false,
  });

  const managedValues = (s: Server) => d.pgOf(s).managedValues();

  const find = (s: Server, name: string) => {
    const l = lookupParameter(name);
    if (l.kind === 'unknown') {
      throw errors.notFound('ConfigurationNotExists', `Server ${s.name} has no parameter '${name}' that pgbyok offers. See: pgbyok server parameter list --server-name ${s.name}`);
    }
    return l;
  };

  return {
    list(tenantId: string, serverName: string): ParameterView[] {
      const s = d.requireServer(tenantId, serverName);
      const rows = stored(s);
      return [
        ...PARAMETERS.map((p) => view(p, rows.get(p.name))),
        ...Object.entries(managedValues(s)).map(([k, v]) => managedView(k, v)),
      ];
    },

    get(tenantId: string, serverName: string, name: string): ParameterView {
      const s = d.requireServer(tenantId, serverName);
      const l = find(s, name);
      if (l.kind === 'managed') return managedView(l.name, managedValues(s)[l.name] ?? '(set by pgbyok)');
      return view(l.spec, stored(s).get(l.spec.name));
    },

    /**
     * Validates and stores a value. On a running server a dynamic parameter is applied with a reload (as an
     * operation); a static one is marked pending until the next restart. On a stopped one it applies at start.
     */
    set(caller: { tenantId: string; name: string }, serverName: string, name: string, raw: string): { parameter: ParameterView; operation?: Operation } {
      const s = d.requireServer(caller.tenantId, serverName);
      const l = find(s, name);
      if (l.kind === 'managed') {
        throw errors.badParameter(`The parameter ${l.name} is managed by pgbyok (TLS, listen addresses, the socket, archiving, data and log locations, preloaded modules) and cannot be changed.`, 'ParameterManagedByPgbyok');
      }
      const spec = l.spec;
      const n = normalizeValue(spec, String(raw));
      if ('error' in n) throw errors.badParameter(n.error, 'InvalidParameterValue');
      d.allow(s, 'setParameter');
      const running = s.state === 'Ready';
      const pending = running && !spec.dynamic && (stored(s).get(spec.name)?.value ?? spec.defaultValue) !== n.value;
      const store = () => d.repo.putParameter(s.id, spec.name, n.value, pending || (stored(s).get(spec.name)?.pendingRestart ?? false));
      // On a running server the value and the operation that applies it are recorded together.
      const operation = running ? d.enqueue(s, caller.name, store) : (store(), undefined);
      const parameter = view(spec, stored(s).get(spec.name));
      d.activity(s, `Parameter ${spec.name} of ${s.name} set to '${n.value}'${pending ? ' (applies at the next restart)' : ''}.`, caller.name);
      return { parameter, ...(operation ? { operation } : {}) };
    },
  };
}

export type ParametersService = ReturnType<typeof createParametersService>;
