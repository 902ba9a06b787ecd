import type { FastifyInstance } from 'fastify';
import type { ServersService } from '../servers/servers.service.js';
import { armRoute, RESOURCE_LEVELS } from '../arm/routing.js';
import { databaseWire, firewallRuleWire, FS_TYPE } from './servers.wire.js';
import { pgOpts, type ServerAddressing } from './postgres-arm.js';

/** A server's `databases` (made in its PostgreSQL) and `firewallRules` (stored and returned). */

const P = `/providers/${FS_TYPE}/:name`;
type Db = { name: string; db: string };
type Rule = { name: string; rule: string };

export function registerServerResourceRoutes(app: FastifyInstance, servers: ServersService, at: ServerAddressing) {
  const { databases, firewallRules } = servers;

  armRoute<Db, { properties?: { charset?: string; collation?: string } }>(app, 'PUT', `${P}/databases/:db`, RESOURCE_LEVELS, pgOpts({ operation: 'DatabaseCreate', duty: 'manageServers' }, {
    body: { type: ['object', 'null'], properties: { properties: { type: ['object', 'null'], properties: { charset: { type: 'string' }, collation: { type: 'string' } } } } },
  }), async (req, reply) => {
    const s = at.find(req, req.params.name);
    const { database, created } = await databases.create(s.tenantId, s.name, req.params.db, req.body?.properties ?? {});
    return reply.code(created ? 201 : 200).send(databaseWire(at.idOf(s), database));
  });
  armRoute<{ name: string }>(app, 'GET', `${P}/databases`, RESOURCE_LEVELS, pgOpts({ operation: 'DatabaseList', duty: 'readServers' }), async (req) => {
    const s = at.find(req, req.params.name);
    return { value: (await databases.list(s.tenantId, s.name)).map((x) => databaseWire(at.idOf(s), x)) };
  });
  armRoute<Db>(app, 'GET', `${P}/databases/:db`, RESOURCE_LEVELS, pgOpts({ operation: 'DatabaseGet', duty: 'readServers' }), async (req) => {
    const s = at.find(req, req.params.name);
    return databaseWire(at.idOf(s), await databases.get(s.tenantId, s.name, req.params.db));
  });
  armRoute<Db>(app, 'DELETE', `${P}/databases/:db`, RESOURCE_LEVELS, pgOpts({ operation: 'DatabaseDelete', duty: 'manageServers' }), async (req, reply) => {
    const s = at.find(req, req.params.name);
    return reply.code((await databases.delete(s.tenantId, s.name, req.params.db)) ? 200 : 204).send();
  });

  armRoute<Rule, { properties: { startIpAddress: string; endIpAddress: string } }>(app, 'PUT', `${P}/firewallRules/:rule`, RESOURCE_LEVELS, pgOpts({ operation: 'FirewallRuleCreate', duty: 'manageServers' }, {
    body: { type: 'object', required: ['properties'], properties: { properties: { type: 'object', required: ['startIpAddress', 'endIpAddress'], properties: { startIpAddress: { type: 'string' }, endIpAddress: { type: 'string' } } } } },
  }), async (req, reply) => {
    const s = at.find(req, req.params.name);
    const { rule, created } = firewallRules.put(s.tenantId, s.name, { name: req.params.rule, ...req.body.properties });
    return reply.code(created ? 201 : 200).send(firewallRuleWire(at.idOf(s), rule));
  });
  armRoute<{ name: string }>(app, 'GET', `${P}/firewallRules`, RESOURCE_LEVELS, pgOpts({ operation: 'FirewallRuleList', duty: 'readServers' }), async (req) => {
    const s = at.find(req, req.params.name);
    return { value: firewallRules.list(s.tenantId, s.name).map((r) => firewallRuleWire(at.idOf(s), r)) };
  });
  armRoute<Rule>(app, 'GET', `${P}/firewallRules/:rule`, RESOURCE_LEVELS, pgOpts({ operation: 'FirewallRuleGet', duty: 'readServers' }), async (req) => {
    const s = at.find(req, req.params.name);
    return firewallRuleWire(at.idOf(s), firewallRules.get(s.tenantId, s.name, req.params.rule));
  });
  armRoute<Rule>(app, 'DELETE', `${P}/firewallRules/:rule`, RESOURCE_LEVELS, pgOpts({ operation: 'FirewallRuleDelete', duty: 'manageServers' }), async (req, reply) => {
    const s = at.find(req, req.params.name);
    return reply.code(firewallRules.delete(s.tenantId, s.name, req.params.rule) ? 200 : 204).send();
  });
}
