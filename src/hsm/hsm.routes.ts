/**
 * The routes only a managed HSM's data plane has, on the vault listener (a request names its HSM by host
 * name): random bytes, the security domain (download activates; the transfer key and upload recover a domain
 * into a new HSM) and local RBAC (role assignments at `/`, `/keys`, `/keys/{name}`; role definitions at `/`).
 * Each route declares its data action; the scope's hook checks it with local RBAC (and activation, except for
 * the security domain's routes) before the handler runs.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errors } from '../lib/errors.js';
import { queryOf } from '../http/request.js';
import type { Caller } from '../identity/identity.service.js';
import type { Vault } from '../vault/vault.types.js';
import type { HsmDataPlane } from './hsm-data-plane.js';
import type { HsmKeys } from './hsm-keys.js';
import type { HsmService } from './hsms.service.js';
import { hsmScopeContains, normalizeScope, roleAssignmentWire, roleDefinitionWire, type LocalRbac } from './local-rbac.js';

const MH = 'Microsoft.KeyVault/managedHsm';
const RA = '/providers/Microsoft.Authorization/roleAssignments';
const RD = '/providers/Microsoft.Authorization/roleDefinitions';

export interface HsmRoutesDeps {
  hsms: HsmService;
  hsmKeys: HsmKeys;
  rbac: LocalRbac;
  dataPlane: HsmDataPlane;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- bodies are checked by each route's schema
type Req = Omit<FastifyRequest<{ Params: Record<string, string> }>, 'body'> & { body: any; vault: Vault; caller: Caller };

/** The scope a role-assignment route addresses: `/` (no prefix), `/keys`, or `/keys/{name}`. */
const scopeOf = (req: FastifyRequest) => {
  const p = req.params as Record<string, string>;
  return req.routeOptions.url!.startsWith('/keys/:name/') ? normalizeScope(`/keys/${p.name}`) : req.routeOptions.url!.startsWith('/keys/') ? '/keys' : '/';
};

/** The preHandler of the HSM scope: only an HSM has these routes; then activation and the route's data action. */
export function authorizeHsmRoute(d: HsmRoutesDeps) {
  return async (req: FastifyRequest) => {
    const { vault, caller } = req as Req;
    if (vault.kind !== 'managedHsm') throw errors.notFound('NotFound', `Vault '${vault.name}' has no ${req.routeOptions.url} (that is a managed HSM's).`);
    const cfg = req.routeOptions.config;
    const scope = req.routeOptions.url!.includes('/providers/Microsoft.Authorization/roleAssignments') ? scopeOf(req) : '/';
    d.dataPlane.authorizeAction(vault, caller, cfg.hsmAction!, scope, cfg.beforeActivation === true);
  };
}

export function registerHsmRoutes(app: FastifyInstance, d: HsmRoutesDeps): void {
  const route = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, operation: string, hsmAction: string,
    handler: (req: Req, reply: FastifyReply) => unknown, o: { body?: object; beforeActivation?: true; readOnly?: true } = {}) => {
    app.route({
      method, url, config: { operation, hsmAction, ...(o.beforeActivation ? { beforeActivation: true } : {}), ...(o.readOnly ? { readOnly: true } : {}) },
      schema: o.body ? { body: o.body } : undefined,
      handler: (req, reply) => handler(req as Req, reply),
    });
  };

  route('POST', '/rng', 'GetRandomBytes', `${MH}/rng/action`, async (req) => ({ value: (await d.hsmKeys.random((req.body ?? {}).count)).toString('base64url') }),
    { body: { type: 'object', required: ['count'], properties: { count: { type: 'integer' } } }, readOnly: true });

  // The security domain: each answers at once; the "pending" routes report the state the SDKs poll for.
  const pending = (v: Vault) => ({ status: v.hsm?.activation === 'Active' ? 'Success' : 'InProgress', status_details: v.hsm?.activation === 'Active' ? 'The security domain is in place; the HSM is activated.' : 'The HSM waits for its security domain.' });
  route('POST', '/securitydomain/download', 'SecurityDomainDownload', `${MH}/securitydomain/download/action`, async (req, reply) => {
    const value = await d.hsms.downloadSecurityDomain(req.vault, req.body);
    reply.code(202).header('azure-asyncoperation', `${req.origin}/securitydomain/download/pending`).header('retry-after', '0');
    return { value };
  }, { body: { type: 'object', required: ['certificates'], properties: { certificates: { type: 'array', maxItems: 10 }, required: { type: 'integer' } } }, beforeActivation: true });
  route('GET', '/securitydomain/download/pending', 'SecurityDomainDownloadStatus', `${MH}/securitydomain/download/read`,
    (req) => pending(d.hsms.byId(req.vault.id) ?? req.vault), { beforeActivation: true });
  route('GET', '/securitydomain/upload', 'SecurityDomainTransferKey', `${MH}/securitydomain/transferkey/read`,
    async (req) => ({ key_format: 'jwk', transfer_key: await d.hsms.transferKey(req.vault) }), { beforeActivation: true });
  route('POST', '/securitydomain/upload', 'SecurityDomainUpload', `${MH}/securitydomain/upload/action`, async (req, reply) => {
    await d.hsms.uploadSecurityDomain(req.vault, (req.body ?? {}).value);
    reply.code(202).header('azure-asyncoperation', `${req.origin}/securitydomain/upload/pending`).header('retry-after', '0');
    return pending(d.hsms.byId(req.vault.id)!);
  }, { body: { type: 'object', required: ['value'], properties: { value: { type: 'string', maxLength: 65536 } } }, beforeActivation: true });
  route('GET', '/securitydomain/upload/pending', 'SecurityDomainUploadStatus', `${MH}/securitydomain/upload/read`,
    (req) => pending(d.hsms.byId(req.vault.id) ?? req.vault), { beforeActivation: true });

  // Local RBAC: role assignments at each of the three scopes.
  const filterOf = (req: FastifyRequest) => {
    const f = queryOf(req).get('$filter') ?? '';
    if (!f) return {};
    if (/^atScope\(\)$/i.test(f.trim())) return { atScope: scopeOf(req) };
    const m = f.match(/^\s*principalId\s+eq\s+'([^']+)'\s*$/i);
    if (m) return { principalId: m[1].toLowerCase() };
    throw errors.badParameter(`The $filter '${f}' is not supported; use atScope() or principalId eq '{id}'.`);
  };
  const assignmentBody = { type: 'object', required: ['properties'], properties: { properties: { type: 'object', required: ['roleDefinitionId', 'principalId'], properties: { roleDefinitionId: { type: 'string' }, principalId: { type: 'string' } } } } };
  for (const prefix of ['', '/keys', '/keys/:name']) {
    route('GET', `${prefix}${RA}`, 'RoleAssignmentList', `${MH}/roleAssignments/read/action`, (req) => {
      // Only what lies at or below the addressed scope (where the caller's read was checked), or, with
      // atScope(), what applies there (at it or above it, as ARM's filter means).
      const f = filterOf(req);
      const scope = scopeOf(req);
      const all = d.rbac.assignments.list(req.vault, f);
      return { value: (f.atScope ? all : all.filter((a) => hsmScopeContains(scope, a.scope))).map(roleAssignmentWire) };
    });
    route('GET', `${prefix}${RA}/:assignment`, 'RoleAssignmentGet', `${MH}/roleAssignments/read/action`, (req) => roleAssignmentWire(d.rbac.assignments.get(req.vault, req.params.assignment, scopeOf(req))));
    // Who may use the HSM's keys changed: its subscribers (the key monitor) hear it at once, as for a vault.
    route('PUT', `${prefix}${RA}/:assignment`, 'RoleAssignmentCreate', `${MH}/roleAssignments/write/action`, (req, reply) => {
      const a = d.rbac.assignments.create(req.vault, req.params.assignment, { ...req.body.properties, scope: scopeOf(req) });
      d.hsms.announceAccessChange(req.vault);
      reply.code(201);
      return roleAssignmentWire(a);
    }, { body: assignmentBody });
    route('DELETE', `${prefix}${RA}/:assignment`, 'RoleAssignmentDelete', `${MH}/roleAssignments/delete/action`, (req) => {
      const a = d.rbac.assignments.delete(req.vault, req.params.assignment, scopeOf(req));
      d.hsms.announceAccessChange(req.vault);
      return roleAssignmentWire(a);
    });
  }
  route('GET', RD, 'RoleDefinitionList', `${MH}/roleDefinitions/read/action`, (req) => ({ value: d.rbac.definitions.list(req.vault).map(roleDefinitionWire) }));
  route('GET', `${RD}/:name`, 'RoleDefinitionGet', `${MH}/roleDefinitions/read/action`, (req) => roleDefinitionWire(d.rbac.definitions.get(req.vault, req.params.name)));
  route('PUT', `${RD}/:name`, 'RoleDefinitionCreate', `${MH}/roleDefinitions/write/action`, (req, reply) => {
    const def = d.rbac.definitions.put(req.vault, req.params.name, (req.body ?? {}).properties);
    reply.code(201);
    return roleDefinitionWire(def);
  }, { body: { type: 'object', required: ['properties'], properties: { properties: { type: 'object' } } } });
  route('DELETE', `${RD}/:name`, 'RoleDefinitionDelete', `${MH}/roleDefinitions/delete/action`, (req) => roleDefinitionWire(d.rbac.definitions.delete(req.vault, req.params.name)));
}
