import type { FastifyInstance } from 'fastify';
import type { ParameterView } from '../servers/parameters.service.js';
import type { ServersService } from '../servers/servers.service.js';
import { accepted, callerOf } from './servers.routes.js';

/** Azure's `flexibleServers/{name}/configurations`: server parameters, in ARM's shape. */

const FS = '/tenants/:tid/providers/Microsoft.DBforPostgreSQL/flexibleServers';
type Params = { tid: string; name: string; param: string };

function configurationWire(tenantId: string, server: string, p: ParameterView) {
  const { name, ...properties } = p;
  return {
    id: `/tenants/${tenantId}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${server}/configurations/${name}`,
    name,
    type: 'Microsoft.DBforPostgreSQL/flexibleServers/configurations',
    properties,
  };
}

export function registerParameterRoutes(app: FastifyInstance, servers: ServersService) {
  app.get<{ Params: Omit<Params, 'param'> }>(`${FS}/:name/configurations`, { config: { operation: 'ConfigurationList', duty: 'readServers' } }, async (req) => ({
    value: servers.parameters.list(req.params.tid, req.params.name).map((p) => configurationWire(req.params.tid, req.params.name, p)),
  }));
  app.get<{ Params: Params }>(`${FS}/:name/configurations/:param`, { config: { operation: 'ConfigurationGet', duty: 'readServers' } }, async (req) =>
    configurationWire(req.params.tid, req.params.name, servers.parameters.get(req.params.tid, req.params.name, req.params.param)));
  app.put<{ Params: Params; Body: { properties: { value: string | number | boolean; source?: string } } }>(`${FS}/:name/configurations/:param`, {
    config: { operation: 'ConfigurationUpdate', duty: 'manageServers' },
    schema: {
      body: {
        type: 'object', required: ['properties'],
        properties: { properties: { type: 'object', required: ['value'], properties: { value: { type: ['string', 'number', 'boolean'] }, source: { type: 'string', enum: ['user-override'] } } } },
      },
    },
  }, async (req, reply) => {
    const { parameter, operation } = servers.parameters.set(callerOf(req), req.params.name, req.params.param, String(req.body.properties.value));
    const body = configurationWire(req.params.tid, req.params.name, parameter);
    return operation ? accepted(reply, req, req.params.tid, operation, body) : body;
  });
}
