import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { errors } from '../lib/errors.js';
import { secretJsonBody } from '../lib/http-client.js';
import { fastifyOptions, installErrorHandler, installJsonParser } from '../http/app-setup.js';
import { auditAttempt, installAuditOutcome } from '../http/audit-hooks.js';
import type { TLSSocket } from 'node:tls';
import { bearerToken, isTrustedService, queryOf, sourceAddress } from '../http/request.js';
import { requireSecuredRoutes, secureScope } from '../http/route-auth.js';
import type { AuditLog } from '../audit/audit.js';
import type { Caller, IdentityService } from '../identity/identity.service.js';
import { hsmAudiences, TokenError, vaultAudiences } from '../identity/tokens.js';
import type { Names } from '../lib/names.js';
import type { CryptoOp, KeyService } from './keys.service.js';
import {
  deletedKeyBundle, deletedKeyItem, keyBundle, keyId, keyItem, page, rotationPolicyWire,
} from './keys.wire.js';
import type { VaultService } from './vaults.service.js';
import type { KeyPermission, Vault } from './vault.types.js';
import { installSecretJsonParser } from './secret-body.js';
import type { DataPlaneAuthz } from './data-plane-authz.js';
import type { FastifyInstance as Scope } from 'fastify';
import type { HsmService } from '../hsm/hsms.service.js';
import type { HsmDataPlane } from '../hsm/hsm-data-plane.js';
import { authorizeHsmRoute, registerHsmRoutes, type HsmRoutesDeps } from '../hsm/hsm.routes.js';

/** Every api-version the official SDKs send (Python 4.8.0b3 and az 2.45 default to 7.4-preview.1). */
const API_VERSIONS = new Set(['7.0', '7.1', '7.2', '7.3', '7.4-preview.1', '7.4', '7.5-preview.1', '7.5', '7.6', '2025-07-01']);
/** Marks the "latest version" in a rewritten URL: `/keys/k/` and `/keys/k//wrapkey` carry an empty version. */
const LATEST = '~latest';

declare module 'fastify' {
  interface FastifyRequest {
    vault?: Vault;
    caller?: Caller;
    origin: string;
  }
}

export interface VaultAppDeps {
  logger: Logger;
  identity: IdentityService;
  vaults: VaultService;
  keys: KeyService;
  audit: AuditLog;
  /** Access policies, or role assignments on a vault with enableRbacAuthorization. */
  dataPlane: DataPlaneAuthz;
  platformOrigin: string;
  /** The vaults' DNS names: the Host header names the vault; the challenge names `names.vaultChallengeResource`. */
  names: Names;
  /** Managed HSMs: served on the same listener under `NAME.managedhsm.<domain>`, authorized by local RBAC. */
  hsm: HsmRoutesDeps & { hsms: HsmService; dataPlane: HsmDataPlane };
  /** Receives Fastify's request handler; the platform attaches it to the one vault listener. */
  serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => Server;
}

type Params = { name: string; version?: string };

const attributesSchema = {
  type: 'object',
  properties: {
    enabled: { type: 'boolean' },
    nbf: { type: ['integer', 'null'] },
    exp: { type: ['integer', 'null'] },
  },
};
const tagsSchema = { type: 'object', additionalProperties: { type: 'string' }, maxProperties: 15 };
const keyOpsSchema = { type: 'array', items: { type: 'string' }, maxItems: 16 };
const cryptoSchema = {
  type: 'object', required: ['alg', 'value'],
  properties: { alg: { type: 'string' }, value: { type: 'string' }, digest: { type: 'string' } },
};

function paging(req: FastifyRequest): { limit: number; offset: number; apiVersion: string } {
  const q = queryOf(req);
  const max = q.get('maxresults');
  const limit = max === null ? 25 : Number(max);
  if (!Number.isInteger(limit) || limit < 1 || limit > 25) throw errors.badParameter('maxresults must be a whole number from 1 to 25.');
  const skip = q.get('$skiptoken');
  const offset = skip === null ? 0 : Number(skip);
  if (!Number.isInteger(offset) || offset < 0) throw errors.badParameter('$skiptoken is invalid.');
  return { limit, offset, apiVersion: q.get('api-version')! };
}

function nextLink(req: FastifyRequest, path: string, items: unknown[], p: { limit: number; offset: number; apiVersion: string }) {
  if (items.length <= p.limit) return null;
  items.length = p.limit;
  return `${req.origin}${path}?api-version=${p.apiVersion}&$skiptoken=${p.offset + p.limit}&maxresults=${p.limit}`;
}

/**
 * The Key Vault data plane. One Fastify app on one HTTPS listener serves every vault; a request finds its
 * vault by the host name it names (`kv1.vault.<domain>`), as Azure's front ends do. Order per request: vault → bearer token
 * (401 challenge before the body is read) → firewall → api-version → access policy → handler → audit.
 */
export function buildVaultApp(d: VaultAppDeps): FastifyInstance {
  const app = Fastify({
    ...fastifyOptions(d.logger),
    serverFactory: d.serverFactory,
    rewriteUrl: (req) => {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const path = q < 0 ? url : url.slice(0, q);
      const rest = q < 0 ? '' : url.slice(q);
      // A managed HSM's role routes at scope '/' arrive as `///providers/...` from the SDKs.
      const fixed = path.replace(/^\/{2,}(?=providers\/)/, '/').replace(/^\/keys\/([^/]+)\/(?=\/|$)/, `/keys/$1/${LATEST}`);
      return fixed + rest;
    },
  });
  installJsonParser(app);
  installErrorHandler(app);
  app.decorateRequest('vault', undefined);
  app.decorateRequest('caller', undefined);
  app.decorateRequest('origin', '');

  const challenge = (v: Vault) => `Bearer authorization="${d.platformOrigin}/${v.tenantId}", resource="${v.kind === 'managedHsm' ? d.names.hsmChallengeResource : d.names.vaultChallengeResource}"`;
  const audiences = { vault: vaultAudiences(d.names), managedHsm: hsmAudiences(d.names) };
  /** What a host name names: a vault (`NAME.vault.<domain>`), a managed HSM (`NAME.managedhsm.<domain>`), or nothing. */
  const named = (host: string | undefined) => {
    const hsm = d.names.hsmNameOf(host);
    if (hsm !== undefined) return `managedhsm:${hsm}`;
    const vault = d.names.vaultNameOf(host);
    return vault === undefined ? undefined : `vault:${vault}`;
  };

  const authenticate = async (req: FastifyRequest) => {
    const host = req.headers.host;
    const target = named(host);
    // TLS server name and Host must name the same vault (a connection is not reused across vaults).
    const sni = (req.raw.socket as TLSSocket).servername;
    const sniTarget = typeof sni === 'string' ? named(sni) : undefined;
    if (sniTarget !== undefined && sniTarget !== target) {
      throw errors.misdirected(`This connection was opened for '${sniTarget.split(':')[1]}' (TLS server name ${sni}); the request names ${host ? `'${host}'` : 'no host'}. Open a connection to the vault's own host name.`);
    }
    const [kind, name] = target === undefined ? [undefined, undefined] : target.split(':');
    const vault = name === undefined ? undefined : kind === 'managedhsm' ? d.hsm.hsms.byName(name) : d.vaults.byName(name);
    if (!vault || vault.deletedAt != null) {
      throw errors.notFound(kind === 'managedhsm' ? 'ManagedHsmNotFound' : 'VaultNotFound', name === undefined
        ? `The host '${host ?? ''}' names no vault: vaults are served as https://NAME.vault.${d.names.domain}${d.names.vaultPort === 443 ? '' : `:${d.names.vaultPort}`}/, managed HSMs as https://NAME.managedhsm.${d.names.domain}${d.names.vaultPort === 443 ? '' : `:${d.names.vaultPort}`}/.`
        : `No ${kind === 'managedhsm' ? 'managed HSM' : 'vault'} named '${name}' is served here.`);
    }
    req.vault = vault;
    // Ids (kid, nextLink) name the vault as its vaultUri does, whatever case or form the Host header used.
    req.origin = vault.kind === 'managedHsm' ? d.names.hsmOrigin(vault.name) : d.names.vaultOrigin(vault.name);
    const token = bearerToken(req);
    if (!token) throw errors.unauthorized('AKV10000: Request is missing a Bearer or PoP token.', challenge(vault));
    try {
      req.caller = await d.identity.authenticate(token, audiences[vault.kind]);
    } catch (e) {
      if (e instanceof TokenError) throw errors.unauthorized(`AKV10022: ${e.message}`, challenge(vault));
      throw e;
    }
    if (req.caller.principal.tenantId !== vault.tenantId) {
      throw errors.unauthorized(
        `AKV10032: Invalid issuer. This vault belongs to tenant ${vault.tenantId}; the token was issued by tenant ${req.caller.principal.tenantId}.`,
        challenge(vault),
      );
    }
    if (!d.vaults.admits(vault, sourceAddress(req), isTrustedService(req))) {
      throw errors.forbidden(
        `Client address is not authorized and caller is not a trusted service. Client address: ${sourceAddress(req)}. Caller: appid=${req.caller.principal.clientId};oid=${req.caller.principal.objectId}. Vault: ${vault.name}.`,
        'ForbiddenByFirewall',
      );
    }
    const apiVersion = queryOf(req).get('api-version');
    if (!apiVersion) throw errors.badParameter('The api-version query parameter is missing.');
    if (!API_VERSIONS.has(apiVersion)) {
      throw errors.badParameter(`The specified version (${apiVersion}) is not recognized. Consider using one of: ${[...API_VERSIONS].join(', ')}.`);
    }
  };

  const authorize = async (req: FastifyRequest) => {
    const perm = req.routeOptions.config.permission!;
    const { vault, caller } = req as Required<Pick<FastifyRequest, 'vault' | 'caller'>> & FastifyRequest;
    const keyName = (req.params as Partial<Params>)?.name;
    if (vault.kind === 'managedHsm') d.hsm.dataPlane.authorizeKeys(vault, caller, perm, req.routeOptions.config.operation, keyName);
    else d.dataPlane.authorize(vault, caller, { permission: perm, operation: req.routeOptions.config.operation, keyName });
  };

  const describe = (req: FastifyRequest) => {
    const params = (req.params ?? {}) as Partial<Params>;
    return {
      tenantId: req.vault?.tenantId,
      vault: req.vault?.name,
      callerObjectId: req.caller?.principal.objectId,
      callerClientId: req.caller?.principal.clientId,
      callerName: req.caller?.principal.name,
      key: params.name,
      version: params.version && params.version !== LATEST ? params.version : undefined,
    };
  };

  // Every request on a vault's port is authenticated, matched or not (an unknown path is then a 404); each
  // route's declared key permission is checked in the scope that holds the routes.
  app.addHook('onRequest', authenticate);
  installAuditOutcome(app, d.audit, 'vault', describe);
  requireSecuredRoutes(app);
  secureScope(app, {
    name: 'vault', enforces: ['permission'], surface: 'vault',
    hooks: (scope) => scope.addHook('preHandler', authorize),
    beforeHandler: auditAttempt(d.audit, 'vault', describe),
  }, (scope) => registerKeyRoutes(scope, d));
  secureScope(app, {
    name: 'managed-hsm', enforces: ['hsmAction'], surface: 'vault',
    hooks: (scope) => scope.addHook('preHandler', authorizeHsmRoute(d.hsm)),
    beforeHandler: auditAttempt(d.audit, 'vault', describe),
  }, (scope) => registerHsmRoutes(scope, d.hsm));
  return app;
}

/** The keys API: one route per operation, each naming the key permission it needs. */
function registerKeyRoutes(app: Scope, d: VaultAppDeps): void {
  const route = <B = Record<string, unknown>>(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    url: string,
    operation: string,
    permission: KeyPermission,
    handler: (req: FastifyRequest<{ Params: Params; Body: B }> & { vault: Vault; caller: Caller }, reply: FastifyReply) => unknown,
    body?: object,
  ) => {
    app.route<{ Params: Params; Body: B }>({
      method, url, config: { operation, permission },
      schema: body ? { body } : undefined,
      handler: (req, reply) => handler(req as any, reply),
    });
  };
  const ver = (v?: string) => (v === LATEST || !v ? undefined : v);

  route('POST', '/keys/:name/create', 'KeyCreate', 'create', async (req) =>
    keyBundle(req.origin, req.vault, await d.keys.createKey(req.vault, req.params.name, req.body as any)),
  {
    type: 'object', required: ['kty'],
    properties: { kty: { type: 'string' }, key_size: { type: 'integer' }, public_exponent: { type: 'integer' }, key_ops: keyOpsSchema, attributes: attributesSchema, tags: tagsSchema },
  });
  route('PUT', '/keys/:name', 'KeyImport', 'import', async (req) =>
    keyBundle(req.origin, req.vault, await d.keys.importKey(req.vault, req.params.name, req.body as any, req.origin)),
  { type: 'object', required: ['key'], properties: { key: { type: 'object' }, Hsm: { type: 'boolean' }, attributes: attributesSchema, tags: tagsSchema } });
  route('GET', '/keys', 'KeyList', 'list', (req) => {
    const p = paging(req);
    const items = d.keys.listKeys(req.vault, p.limit + 1, p.offset);
    const link = nextLink(req, '/keys', items, p);
    return page(items.map((v) => keyItem(req.origin, req.vault, v, false)), link);
  });
  route('GET', '/keys/:name/versions', 'KeyListVersions', 'list', (req) => {
    const p = paging(req);
    const items = d.keys.listVersions(req.vault, req.params.name, p.limit + 1, p.offset);
    const link = nextLink(req, `/keys/${req.params.name}/versions`, items, p);
    return page(items.map((v) => keyItem(req.origin, req.vault, v, true)), link);
  });
  route('GET', '/keys/:name/:version', 'KeyGet', 'get', (req) =>
    keyBundle(req.origin, req.vault, d.keys.getKey(req.vault, req.params.name, ver(req.params.version))));
  route('GET', '/keys/:name', 'KeyGet', 'get', (req) =>
    keyBundle(req.origin, req.vault, d.keys.getKey(req.vault, req.params.name)));
  route('PATCH', '/keys/:name/:version', 'KeyUpdate', 'update', (req) =>
    keyBundle(req.origin, req.vault, d.keys.updateKey(req.vault, req.params.name, ver(req.params.version), req.body as any)),
  { type: 'object', properties: { key_ops: keyOpsSchema, attributes: attributesSchema, tags: tagsSchema } });
  route('DELETE', '/keys/:name', 'KeyDelete', 'delete', (req) => {
    const { key, latest } = d.keys.deleteKey(req.vault, req.params.name);
    return deletedKeyBundle(req.origin, req.vault, key, latest);
  });
  route('GET', '/deletedkeys', 'KeyListDeleted', 'list', (req) => {
    const p = paging(req);
    const items = d.keys.listDeletedKeys(req.vault, p.limit + 1, p.offset);
    const link = nextLink(req, '/deletedkeys', items, p);
    return page(items.map(({ key, latest }) => deletedKeyItem(req.origin, req.vault, key, latest)), link);
  });
  route('GET', '/deletedkeys/:name', 'KeyGetDeleted', 'get', (req) => {
    const { key, latest } = d.keys.getDeletedKey(req.vault, req.params.name);
    return deletedKeyBundle(req.origin, req.vault, key, latest);
  });
  route('POST', '/deletedkeys/:name/recover', 'KeyRecover', 'recover', (req) =>
    keyBundle(req.origin, req.vault, d.keys.recoverKey(req.vault, req.params.name)));
  route('DELETE', '/deletedkeys/:name', 'KeyPurge', 'purge', (req, reply) => {
    d.keys.purgeKey(req.vault, req.params.name);
    reply.code(204).send();
  });
  route('POST', '/keys/:name/backup', 'KeyBackup', 'backup', async (req) => ({ value: await d.keys.backupKey(req.vault, req.params.name) }));
  route('POST', '/keys/restore', 'KeyRestore', 'restore', async (req) =>
    keyBundle(req.origin, req.vault, await d.keys.restoreKey(req.vault, (req.body as { value: string }).value)),
  { type: 'object', required: ['value'], properties: { value: { type: 'string' } } });
  route('POST', '/keys/:name/rotate', 'KeyRotate', 'rotate', async (req) =>
    keyBundle(req.origin, req.vault, await d.keys.rotateKey(req.vault, req.params.name)));
  route('GET', '/keys/:name/rotationpolicy', 'KeyRotationPolicyGet', 'getrotationpolicy', (req) =>
    rotationPolicyWire(req.origin, req.params.name, d.keys.getRotationPolicy(req.vault, req.params.name)));
  route('PUT', '/keys/:name/rotationpolicy', 'KeyRotationPolicySet', 'setrotationpolicy', (req) =>
    rotationPolicyWire(req.origin, req.params.name, d.keys.setRotationPolicy(req.vault, req.params.name, req.body as any)),
  {
    type: 'object',
    properties: {
      lifetimeActions: { type: 'array', maxItems: 8, items: { type: 'object', required: ['trigger', 'action'], properties: { trigger: { type: 'object' }, action: { type: 'object' } } } },
      attributes: { type: 'object', properties: { expiryTime: { type: 'string' } } },
    },
  });

  const cryptoRoutes: [string, CryptoOp, string][] = [
    ['encrypt', 'encrypt', 'KeyEncrypt'], ['decrypt', 'decrypt', 'KeyDecrypt'], ['wrapkey', 'wrapKey', 'KeyWrap'],
    ['unwrapkey', 'unwrapKey', 'KeyUnwrap'], ['sign', 'sign', 'KeySign'], ['verify', 'verify', 'KeyVerify'],
  ];
  // Their bodies carry key material (a DEK, for wrapKey): read as bytes by a parser of their own.
  app.register(async (cryptoScope) => {
    installSecretJsonParser(cryptoScope);
    for (const [path, op, operation] of cryptoRoutes) cryptoRoute(cryptoScope, path, op, operation);
  });
  function cryptoRoute(app: Scope, path: string, op: CryptoOp, operation: string) {
    app.route<{ Params: Params; Body: Record<string, unknown> }>({
      method: 'POST', url: `/keys/:name/:version/${path}`, config: { operation, permission: op, readOnly: true }, schema: { body: cryptoSchema },
      handler: async (req, reply) => {
        const { version, out, iv, tag } = await d.keys.crypto(req.vault!, req.params.name, ver(req.params.version), op, req.body);
        if (typeof out === 'boolean') return { value: out };
        // The result (an unwrapped DEK, for unwrapKey) goes out as bytes, never as a string, and every copy is
        // wiped once the reply has been handed to TLS.
        const gcm: Record<string, string> = iv && tag ? { iv: iv.toString('base64url'), tag: tag.toString('base64url') } : {};
        const body = secretJsonBody({ kid: keyId(req.origin, req.params.name, version.version), ...gcm }, 'value', out);
        out.fill(0);
        const wipe = () => body.fill(0);
        reply.raw.once('finish', wipe).once('close', wipe);
        return reply.type('application/json; charset=utf-8').send(body);
      },
    });
  }
}
