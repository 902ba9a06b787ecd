import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { queryOf, requestOrigin } from '../http/request.js';
import { errors } from '../lib/errors.js';
import type { IdentityService } from './identity.service.js';
import type { TokenService } from './tokens.js';

/** An error as the Microsoft identity platform words it (MSAL surfaces `error` and `error_description`). */
function aadError(reply: FastifyReply, status: number, error: string, code: number, description: string) {
  return reply.code(status).send({
    error,
    error_description: `AADSTS${code}: ${description}\r\nTrace ID: ${randomUUID()}\r\nTimestamp: ${new Date().toISOString()}`,
    error_codes: [code],
    timestamp: new Date().toISOString(),
    trace_id: randomUUID(),
    correlation_id: randomUUID(),
  });
}

/** `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 2.3.1) → [id, secret], or undefined when malformed. */
function decodeBasic(b64: string): [string, string] | undefined {
  const text = Buffer.from(b64, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  try {
    return [decodeURIComponent(text.slice(0, colon)), decodeURIComponent(text.slice(colon + 1))];
  } catch {
    return undefined;
  }
}

/** `{resource}/.default` (and the `//.default` some clients send) → the resource, for each audience issued. */
const scopeToResource = (audiences: readonly string[]) => new Map<string, string>(
  audiences.flatMap((r) => [[`${r}/.default`, r], [`${r}//.default`, r]] as [string, string][]),
);

/**
 * The Microsoft identity platform v2 endpoints MSAL needs for client credentials: OIDC discovery, JWKS and
 * the token endpoint. Tenants are addressed by id (or name) in the path, as `login.microsoftonline.com` does.
 */
export function registerIdentityRoutes(app: FastifyInstance, identity: IdentityService, tokens: TokenService, canonicalOrigin: string) {
  const tenantOf = (ref: string) => identity.tenants().find((t) => t.id === ref || t.name === ref);
  const SCOPE_TO_RESOURCE = scopeToResource(tokens.audiences);

  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(String(body))));
  });

  app.get<{ Params: { tenant: string } }>('/:tenant/v2.0/.well-known/openid-configuration', {
    config: { operation: 'OpenIdConfiguration', public: 'sign-in discovery', audit: false },
  }, async (req, reply) => {
    const tenant = tenantOf(req.params.tenant);
    if (!tenant) return aadError(reply, 400, 'invalid_tenant', 90002, `Tenant '${req.params.tenant}' not found.`);
    // The issuer must share scheme, host and port with the authority the client used (MSAL checks it).
    const origin = requestOrigin(req, canonicalOrigin);
    return {
      issuer: `${origin}/${tenant.id}/v2.0`,
      authorization_endpoint: `${origin}/${tenant.id}/oauth2/v2.0/authorize`,
      token_endpoint: `${origin}/${tenant.id}/oauth2/v2.0/token`,
      jwks_uri: `${origin}/${tenant.id}/discovery/v2.0/keys`,
      response_types_supported: ['code', 'id_token', 'token'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
      token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
      grant_types_supported: ['client_credentials'],
      scopes_supported: [...SCOPE_TO_RESOURCE.keys()].filter((s) => !s.includes('//')),
      tenant_region_scope: 'NA',
      cloud_instance_name: 'pgbyok.local',
    };
  });

  app.get<{ Params: { tenant: string } }>('/:tenant/discovery/v2.0/keys', {
    config: { operation: 'SigningKeys', public: 'token verification keys', audit: false },
  }, async (req, reply) => {
    if (!tenantOf(req.params.tenant)) return aadError(reply, 400, 'invalid_tenant', 90002, `Tenant '${req.params.tenant}' not found.`);
    return tokens.jwks();
  });

  app.post<{ Params: { tenant: string }; Body: Record<string, string> | undefined }>(
    '/:tenant/oauth2/v2.0/token',
    { config: { operation: 'TokenIssue', public: 'sign-in: the client authenticates with its secret', readOnly: true } },
    async (req: FastifyRequest<{ Params: { tenant: string }; Body: Record<string, string> | undefined }>, reply) => {
      const tenant = tenantOf(req.params.tenant);
      if (!tenant) return aadError(reply, 400, 'invalid_request', 90002, `Tenant '${req.params.tenant}' not found.`);
      // Only string fields count: a JSON body may carry anything, and the form shape is all strings.
      const form: Record<string, string> = req.body && typeof req.body === 'object'
        ? Object.fromEntries(Object.entries(req.body).filter(([, v]) => typeof v === 'string'))
        : {};
      if (form.grant_type !== 'client_credentials') {
        return aadError(reply, 400, 'unsupported_grant_type', 70003, `The grant type '${form.grant_type ?? ''}' is not supported; use client_credentials.`);
      }
      let clientId = form.client_id;
      let secret = form.client_secret;
      const basic = req.headers.authorization?.match(/^Basic\s+(.+)$/i);
      if (basic) {
        const decoded = decodeBasic(basic[1]);
        if (!decoded) return aadError(reply, 400, 'invalid_request', 900144, 'The Basic credential is not valid: expected base64 of the form-encoded client_id:client_secret.');
        [clientId, secret] = decoded;
      }
      if (!clientId || !secret) return aadError(reply, 400, 'invalid_request', 900144, "The request body must contain 'client_id' and 'client_secret'.");
      const resource = SCOPE_TO_RESOURCE.get(form.scope ?? '');
      if (!resource) {
        return aadError(reply, 400, 'invalid_scope', 70011, `The provided value for scope '${form.scope ?? ''}' is not valid. Use one of: ${[...SCOPE_TO_RESOURCE.keys()].filter((s) => !s.includes('//')).join(', ')}.`);
      }
      const principal = await identity.authenticateClient(tenant.id, clientId, secret);
      if (!principal) {
        return aadError(reply, 401, 'invalid_client', 7000215, `Invalid client secret provided, or application '${clientId}' was not found in tenant '${tenant.id}'.`);
      }
      req.tokenSubject = principal;
      const { token, expiresIn } = await tokens.issue({ tid: tenant.id, oid: principal.objectId, appid: principal.clientId, aud: resource });
      reply.header('cache-control', 'no-store');
      return { token_type: 'Bearer', expires_in: expiresIn, ext_expires_in: expiresIn, access_token: token };
    },
  );
}

/** The identity a managed-identity token request names by resource id: [tenant id, identity name]. */
function identityRef(req: FastifyRequest): [string, string] | undefined {
  const q = queryOf(req);
  const m = (q.get('msi_res_id') ?? q.get('mi_res_id'))?.match(/^\/tenants\/([^/]+)\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/([^/]+)$/i);
  return m ? [m[1], m[2]] : undefined;
}

/**
 * Managed-identity tokens for the platform's own services (registered in the trusted-service scope).
 */
export function registerManagedIdentityRoutes(app: FastifyInstance, identity: IdentityService, tokens: TokenService) {
  /**
   * Managed-identity tokens for the platform's own services, as Azure's instance metadata service hands
   * them to a resource that has a user-assigned identity: no secret, but only a caller presenting the
   * trusted-service certificate may ask. A deleted identity gets no token.
   */
  app.get('/metadata/identity/oauth2/token', {
    // A refusal (even by the trusted-service check) is recorded in the tenant of the identity asked for.
    config: { operation: 'ManagedIdentityToken', trustedService: true, auditTenant: (req) => identityRef(req)?.[0] },
  }, async (req, reply) => {
    const q = queryOf(req);
    const resource = q.get('resource')?.replace(/\/$/, '') ?? '';
    if (!tokens.audiences.includes(resource)) throw errors.badParameter(`Unknown resource '${resource}'.`);
    const resId = q.get('msi_res_id') ?? q.get('mi_res_id');
    const m = identityRef(req);
    const clientId = q.get('client_id');
    const principal = m
      ? identity.principals(m[0]).find((p) => p.kind === 'UserAssignedIdentity' && p.name === m[1])
      : clientId ? identity.tenants().map((t) => identity.principals(t.id).find((p) => p.clientId === clientId)).find(Boolean) : undefined;
    if (!principal || principal.kind !== 'UserAssignedIdentity') {
      throw errors.notFound('IdentityNotFound', `The managed identity ${resId ?? clientId ?? ''} does not exist.`);
    }
    req.tokenSubject = principal;
    const { token, expiresIn, expiresOn } = await tokens.issue({ tid: principal.tenantId, oid: principal.objectId, appid: principal.clientId, aud: resource });
    reply.header('cache-control', 'no-store');
    return {
      access_token: token, expires_in: String(expiresIn), expires_on: String(expiresOn),
      resource, token_type: 'Bearer', client_id: principal.clientId,
    };
  });
}
