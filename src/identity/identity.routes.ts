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
/** The scopes as advertised: the `//.default` spellings are accepted, not offered. */
const advertisedScopes = (audiences: readonly string[]) => audiences.map((r) => `${r}/.default`);

/** An OpenID Provider configuration (MSAL reads authorization_endpoint and token_endpoint) under `oauth2`. */
function openIdConfiguration(issuer: string, oauth2: string, jwksUri: string, scopes: string[]) {
  return {
    issuer,
    authorization_endpoint: `${oauth2}/authorize`,
    token_endpoint: `${oauth2}/token`,
    jwks_uri: jwksUri,
    response_types_supported: ['code', 'id_token', 'token'],
    subject_types_supported: ['pairwise'],
    id_token_signing_alg_values_supported: ['RS256'],
    token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
    grant_types_supported: ['client_credentials'],
    scopes_supported: scopes,
  };
}

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
    const authority = `${origin}/${tenant.id}`;
    return {
      ...openIdConfiguration(`${authority}/v2.0`, `${authority}/oauth2/v2.0`, `${authority}/discovery/v2.0/keys`, advertisedScopes(tokens.audiences)),
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

  /**
   * The client-credentials grant, shared by the tenant's token endpoint and the tenant-less ADFS one:
   * `tenantFor` says which tenant the named client must belong to (undefined: none), and `authority` how the
   * refusal names where the client was looked for.
   */
  const clientCredentialsToken = async (
    req: FastifyRequest<{ Body: Record<string, string> | undefined }>, reply: FastifyReply,
    tenantFor: (clientId: string) => string | undefined, authority: (clientId: string) => string,
  ) => {
    const form = formOf(req.body);
    if (form.grant_type !== 'client_credentials') {
      return aadError(reply, 400, 'unsupported_grant_type', 70003, `The grant type '${form.grant_type ?? ''}' is not supported; use client_credentials.`);
    }
    const client = clientOf(req, form);
    if (client === 'malformed') return aadError(reply, 400, 'invalid_request', 900144, 'The Basic credential is not valid: expected base64 of the form-encoded client_id:client_secret.');
    if (!client) return aadError(reply, 400, 'invalid_request', 900144, "The request body must contain 'client_id' and 'client_secret'.");
    const [clientId, secret] = client;
    const resource = SCOPE_TO_RESOURCE.get(form.scope ?? '');
    if (!resource) {
      return aadError(reply, 400, 'invalid_scope', 70011, `The provided value for scope '${form.scope ?? ''}' is not valid. Use one of: ${advertisedScopes(tokens.audiences).join(', ')}.`);
    }
    const tenantId = tenantFor(clientId);
    const principal = tenantId === undefined ? undefined : await identity.authenticateClient(tenantId, clientId, secret);
    if (!principal) {
      return aadError(reply, 401, 'invalid_client', 7000215, `Invalid client secret provided, or application '${clientId}' was not found in ${authority(clientId)}.`);
    }
    req.tokenSubject = principal;
    const { token, expiresIn } = await tokens.issue({ tid: principal.tenantId, oid: principal.objectId, appid: principal.clientId, aud: resource });
    reply.header('cache-control', 'no-store');
    return { token_type: 'Bearer', expires_in: expiresIn, ext_expires_in: expiresIn, access_token: token };
  };

  app.post<{ Params: { tenant: string }; Body: Record<string, string> | undefined }>(
    '/:tenant/oauth2/v2.0/token',
    { config: { operation: 'TokenIssue', public: 'sign-in: the client authenticates with its secret', readOnly: true } },
    async (req, reply) => {
      const tenant = tenantOf(req.params.tenant);
      if (!tenant) return aadError(reply, 400, 'invalid_request', 90002, `Tenant '${req.params.tenant}' not found.`);
      return clientCredentialsToken(req, reply, () => tenant.id, () => `tenant '${tenant.id}'`);
    },
  );

  /*
   * The ADFS shape of the same sign-in, for clients that cannot skip Microsoft's instance discovery (MSAL
   * Python before 1.23, so az before 2.53): the authority is `{origin}/adfs`, MSAL fetches
   * `{authority}/.well-known/openid-configuration` (no `/v2.0`) and posts to its token_endpoint with no
   * tenant in the URL. Client ids are unique across tenants, so the client names its tenant.
   */
  app.get('/adfs/.well-known/openid-configuration', {
    config: { operation: 'OpenIdConfiguration', public: 'sign-in discovery', audit: false },
  }, async (req) => {
    const authority = `${requestOrigin(req, canonicalOrigin)}/adfs`;
    return openIdConfiguration(authority, `${authority}/oauth2`, `${authority}/discovery/keys`, advertisedScopes(tokens.audiences));
  });

  app.get('/adfs/discovery/keys', {
    config: { operation: 'SigningKeys', public: 'token verification keys', audit: false },
  }, async () => tokens.jwks());

  // A refusal is recorded in the tenant of the client it named (none for an unknown client).
  const clientTenant = (clientId: string) => identity.tenantOfClient(clientId);
  app.post<{ Body: Record<string, string> | undefined }>('/adfs/oauth2/token', {
    config: {
      operation: 'TokenIssue', public: 'sign-in: the client authenticates with its secret', readOnly: true,
      auditTenant: (req) => {
        const client = clientOf(req, formOf(req.body as Record<string, string> | undefined));
        return client && client !== 'malformed' ? clientTenant(client[0]) : undefined;
      },
    },
  }, async (req, reply) => clientCredentialsToken(req, reply, clientTenant, () => 'the directory'));
}

/** Only string fields count: a JSON body may carry anything, and the form shape is all strings. */
function formOf(body: Record<string, string> | undefined): Record<string, string> {
  return body && typeof body === 'object' ? Object.fromEntries(Object.entries(body).filter(([, v]) => typeof v === 'string')) : {};
}

/** [client id, secret] from a Basic header (which wins) or the form; 'malformed' for a bad Basic header. */
function clientOf(req: FastifyRequest, form: Record<string, string>): [string, string] | 'malformed' | undefined {
  const basic = req.headers.authorization?.match(/^Basic\s+(.+)$/i);
  const pair = basic ? decodeBasic(basic[1]) : [form.client_id, form.client_secret];
  if (!pair) return 'malformed';
  return pair[0] && pair[1] ? [pair[0], pair[1]] : undefined;
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
