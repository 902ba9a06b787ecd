import type { Names } from '../lib/names.js';
import type { FastifyInstance } from 'fastify';
import { errors } from '../lib/errors.js';
import { queryOf } from '../http/request.js';
import type { ServersService } from '../servers/servers.service.js';
import type { ArmService } from '../arm/arm.service.js';
import { armRoute, LIST_LEVELS, RESOURCE_LEVELS } from '../arm/routing.js';
import type { GroupMember } from '../arm/resources.routes.js';
import { backupWire, FS_TYPE, operationWire, serverWire } from './servers.wire.js';
import { promotionOf, serverBodySchema, serverPutOf, updateOf, type ServerBody } from './servers.body.js';
import { callerOf, createServerAddressing, pgOpts } from './postgres-arm.js';
import { registerParameterRoutes } from './parameters.routes.js';
import { registerServerResourceRoutes } from './server-resources.routes.js';
import { registerPostgresLocationRoutes } from './postgres-locations.routes.js';

/**
 * Microsoft.DBforPostgreSQL/flexibleServers as ARM serves it: at `/subscriptions/{sub}/resourceGroups/{rg}/...`
 * (and pgbyok's tenant path), ARM ids from placement, long operations answered with ARM's polling headers.
 */

const P = `/providers/${FS_TYPE}`;
type Named = { name: string };

export function registerServerRoutes(app: FastifyInstance, d: { servers: ServersService; arm: ArmService; names: Pick<Names, 'serverFqdn'> }): GroupMember {
  const { servers, arm } = d;
  const at = createServerAddressing(arm, servers, d.names);
  const out = (s: Parameters<typeof at.ids>[0]) => serverWire(s, at.ids(s), servers.earliestRestore(s));

  arm.registerType({ readDuty: 'readServers', type: FS_TYPE, list: (tid) => servers.list(tid).map((s) => ({ name: s.name, location: s.location })) });

  armRoute<Named, ServerBody>(app, 'PUT', `${P}/:name`, RESOURCE_LEVELS, pgOpts({ operation: 'ServerCreate', duty: 'manageServers' }, { body: serverBodySchema }), async (req, reply) => {
    const b = req.body ?? {};
    const put = serverPutOf(b);
    const caller = callerOf(req);
    if (put.verb === 'update') {
      const s = at.find(req, req.params.name);
      const { server, operation } = await servers.update(caller, s.name, put.input);
      return at.accepted(reply, req, operation, server.location, out(server));
    }
    const plan = arm.plan(req.arm, FS_TYPE, req.params.name, b.location ?? '', b.tags);
    const { server, operation } = await arm.create(plan, b.location ?? '', () => put.verb === 'replica' ? servers.createReplica(caller, { ...put.input, name: req.params.name })
      : put.verb === 'restore' ? servers.restore(caller, { ...put.input, name: req.params.name })
        : servers.create(caller, { ...put.input, name: req.params.name }));
    return at.accepted(reply, req, operation, server.location, out(server));
  });

  armRoute<Named, ServerBody>(app, 'PATCH', `${P}/:name`, RESOURCE_LEVELS, pgOpts({ operation: 'ServerUpdate', duty: 'manageServers' }, { body: serverBodySchema }), async (req, reply) => {
    const s = at.find(req, req.params.name);
    if (promotionOf(req.body ?? {})) return at.accepted(reply, req, servers.promote(callerOf(req), s.name), s.location, out(s));
    const { server, operation } = await servers.update(callerOf(req), s.name, updateOf(req.body ?? {}));
    return at.accepted(reply, req, operation, server.location, out(server));
  });

  armRoute(app, 'GET', P, LIST_LEVELS, pgOpts({ operation: 'ServerList', duty: 'readServers' }), async (req) => ({ value: at.inScope(req).map(out) }));
  armRoute<Named>(app, 'GET', `${P}/:name`, RESOURCE_LEVELS, pgOpts({ operation: 'ServerGet', duty: 'readServers' }), async (req) => out(at.find(req, req.params.name)));
  armRoute<Named>(app, 'DELETE', `${P}/:name`, RESOURCE_LEVELS, pgOpts({ operation: 'ServerDelete', duty: 'manageServers' }), async (req, reply) => {
    const s = at.find(req, req.params.name);
    return at.accepted(reply, req, servers.delete(callerOf(req), s.name), s.location, undefined);
  });
  armRoute<Named>(app, 'GET', `${P}/:name/replicas`, RESOURCE_LEVELS, pgOpts({ operation: 'ReplicaList', duty: 'readServers' }), async (req) => ({
    value: servers.replicas(callerOf(req), at.find(req, req.params.name).name).map(out),
  }));
  for (const action of ['stop', 'start', 'restart', 'revalidate', 'promote'] as const) {
    armRoute<Named>(app, 'POST', `${P}/:name/${action}`, RESOURCE_LEVELS, pgOpts({ operation: `Server${action[0].toUpperCase()}${action.slice(1)}`, duty: 'manageServers' }), async (req, reply) => {
      const s = at.find(req, req.params.name);
      return at.accepted(reply, req, servers[action](callerOf(req), s.name), s.location, undefined);
    });
  }
  armRoute<Named>(app, 'GET', `${P}/:name/backups`, RESOURCE_LEVELS, pgOpts({ operation: 'BackupList', duty: 'readServers' }), async (req) => {
    const s = at.find(req, req.params.name);
    return { value: servers.backups(callerOf(req), s.name).map((m) => backupWire(at.idOf(s), m)) };
  });
  armRoute<Named & { backup: string }>(app, 'GET', `${P}/:name/backups/:backup`, RESOURCE_LEVELS, pgOpts({ operation: 'BackupGet', duty: 'readServers' }), async (req) => {
    const s = at.find(req, req.params.name);
    const m = servers.backups(callerOf(req), s.name).find((x) => x.id === req.params.backup);
    if (!m) throw errors.notFound('ResourceNotFound', `The backup '${req.params.backup}' of server ${s.name} was not found.`);
    return backupWire(at.idOf(s), m);
  });
  // An on-demand backup (pgbyok's own verb).
  armRoute<Named>(app, 'POST', `${P}/:name/backups`, RESOURCE_LEVELS, pgOpts({ operation: 'BackupCreate', duty: 'manageServers' }), async (req, reply) => {
    const s = at.find(req, req.params.name);
    return at.accepted(reply, req, servers.backup(callerOf(req), s.name), s.location, {});
  });
  armRoute<Named>(app, 'GET', `${P}/:name/health`, RESOURCE_LEVELS, pgOpts({ operation: 'ServerHealth', duty: 'readServers' }), async (req) =>
    servers.health(callerOf(req), at.find(req, req.params.name).name));

  registerParameterRoutes(app, servers, at);
  registerServerResourceRoutes(app, servers, at);
  registerPostgresLocationRoutes(app, { servers, at, out });

  // pgbyok's own operation records (the CLI polls them), on the tenant path.
  app.get<{ Params: { tid: string; id: string } }>('/tenants/:tid/providers/Microsoft.DBforPostgreSQL/operations/:id', {
    config: { operation: 'OperationGet', duty: 'readServers' },
  }, async (req) => operationWire(servers.operation(req.params.tid, req.params.id)));
  app.get<{ Params: { tid: string } }>('/tenants/:tid/providers/Microsoft.DBforPostgreSQL/operations', {
    config: { operation: 'OperationList', duty: 'readServers' },
  }, async (req) => {
    const top = queryOf(req).get('top');
    if (top !== null && !/^\d+$/.test(top)) throw errors.badParameter('top must be a whole number.');
    return { value: servers.operations(req.params.tid, top ? Number(top) : 100).map(operationWire) };
  });

  return {
    type: FS_TYPE, duty: 'manageServers',
    remove(req, name) {
      const s = servers.list(req.arm.tenantId).find((x) => x.name === name);
      if (s && s.state !== 'Dropping') servers.delete(callerOf(req), s.name);
    },
  };
}
