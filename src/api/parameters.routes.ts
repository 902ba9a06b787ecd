import type { FastifyInstance } from 'fastify';
import type { ServersService } from '../servers/servers.service.js';
import { FS_TYPE, configurationWire } from './servers.wire.js';
import { callerOf, pgOpts, type ServerAddressing } from './postgres-arm.js';
import { armRoute, RESOURCE_LEVELS } from '../arm/routing.js';

/** Azure's `flexibleServers/{name}/configurations`: server parameters, in ARM's shape. */

const P = `/providers/${FS_TYPE}/:name/configurations`;
type Params = { name: string; param: string };
type Body = { properties: { value: string | number | boolean; source?: string } };

const bodySchema = {
  type: 'object', required: ['properties'],
  properties: { properties: { type: 'object', required: ['value'], properties: { value: { type: ['string', 'number', 'boolean'] }, source: { type: 'string', enum: ['user-override'] } } } },
};

export function registerParameterRoutes(app: FastifyInstance, servers: ServersService, at: ServerAddressing) {
  armRoute<Omit<Params, 'param'>>(app, 'GET', P, RESOURCE_LEVELS, pgOpts({ operation: 'ConfigurationList', duty: 'readServers' }), async (req) => {
    const s = at.find(req, req.params.name);
    return { value: servers.parameters.list(s.tenantId, s.name).map((p) => configurationWire(at.idOf(s), p)) };
  });
  armRoute<Params>(app, 'GET', `${P}/:param`, RESOURCE_LEVELS, pgOpts({ operation: 'ConfigurationGet', duty: 'readServers' }), async (req) => {
    const s = at.find(req, req.params.name);
    return configurationWire(at.idOf(s), servers.parameters.get(s.tenantId, s.name, req.params.param));
  });
  // PUT (create-or-update) and PATCH (update) set a value alike.
  for (const method of ['PUT', 'PATCH'] as const) {
    armRoute<Params, Body>(app, method, `${P}/:param`, RESOURCE_LEVELS, pgOpts({ operation: 'ConfigurationUpdate', duty: 'manageServers' }, { body: bodySchema }), async (req, reply) => {
      const s = at.find(req, req.params.name);
      const { parameter, operation } = servers.parameters.set(callerOf(req), s.name, req.params.param, String(req.body.properties.value));
      const body = configurationWire(at.idOf(s), parameter);
      return operation ? at.accepted(reply, req, operation, s.location, body) : body;
    });
  }
}
