import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import type { Duty } from '../identity/roles.js';
import type { KeyPermission } from '../vault/vault.types.js';
import type { AuditRecord } from '../audit/audit.js';

/**
 * Who may call a route is part of the route. Each route declares exactly one of these in its `config`;
 * the scope (an encapsulated fastify plugin) it is registered in enforces that kind with its own hooks,
 * and refuses at start-up a route that declares a kind it does not enforce. A route that no scope
 * secured stops start-up. Nothing here looks at the request URL.
 */
declare module 'fastify' {
  interface FastifyContextConfig {
    operation?: string;
    /** A management token of the addressed tenant and a role carrying this duty. */
    duty?: Duty;
    /** Any valid management token (who am I). */
    signedIn?: true;
    /** A vault data-plane token of the vault's tenant and this key permission in its access policies. */
    permission?: KeyPermission;
    /** A managed HSM data-plane token of the HSM's tenant and a local role assignment granting this data action. */
    hsmAction?: string;
    /** An HSM route that answers before activation (the security domain's own). */
    beforeActivation?: true;
    /** The platform's trusted-service client certificate. */
    trustedService?: true;
    /** The secret code given to the vault's event subscription. */
    hookCode?: true;
    /** No credential: the value says why (sign-in, public discovery). */
    public?: string;
    /** The tenant an audit record of this route belongs to when no caller is known (refusals). */
    auditTenant?: (req: FastifyRequest) => string | undefined;
    /**
     * The route changes no state (a computation or a token): it is recorded with its outcome only, and its
     * reply withheld when that record cannot be written. Every other non-GET is also recorded before it acts.
     */
    readOnly?: true;
    /** false: not recorded in the audit log (public discovery reads only). */
    audit?: false;
    /** Which surface the audit record names; set by the scope. */
    surface?: AuditRecord['surface'];
    /** The scope that enforces this route's declared kind; set by the scope at registration. */
    securedBy?: string;
  }
}

export const AUTH_KINDS = ['duty', 'signedIn', 'permission', 'hsmAction', 'trustedService', 'hookCode', 'public'] as const;
export type AuthKind = (typeof AUTH_KINDS)[number];

export class RouteDeclarationError extends Error {}

const label = (r: Pick<RouteOptions, 'method' | 'url'>) => `${[r.method].flat().join(',')} ${r.url}`;

/** The one kind a route declares; a route with none, or more than one, is a programming error. */
export function declaredAuth(route: Pick<RouteOptions, 'method' | 'url' | 'config'>): AuthKind {
  const config = (route.config ?? {}) as Record<string, unknown>;
  const kinds = AUTH_KINDS.filter((k) => config[k] !== undefined);
  if (kinds.length !== 1) {
    throw new RouteDeclarationError(
      `Route ${label(route)} must declare exactly one of ${AUTH_KINDS.join(', ')} in its config (it declares ${kinds.length ? kinds.join(' and ') : 'none'}).`,
    );
  }
  return kinds[0];
}

/** A registered route and how it is secured, for inspection (tests enumerate them). */
export interface RouteSummary {
  method: string;
  url: string;
  securedBy: string;
  kind: AuthKind;
}

declare module 'fastify' {
  interface FastifyInstance {
    securedRoutes(): RouteSummary[];
  }
}

/**
 * On the root app: every route registered anywhere below must have been secured by a scope; checked when
 * the app becomes ready, so a missing declaration stops start-up. `app.securedRoutes()` lists them.
 */
export function requireSecuredRoutes(app: FastifyInstance): void {
  const routes: RouteOptions[] = [];
  app.decorate('securedRoutes', () => routes.map((r) => ({
    method: [r.method].flat().join(','), url: r.url, securedBy: r.config?.securedBy ?? '', kind: declaredAuth(r),
  })));
  app.addHook('onRoute', (route) => {
    routes.push(route);
  });
  app.addHook('onReady', async () => {
    for (const r of routes) {
      declaredAuth(r);
      if (!r.config?.securedBy) throw new RouteDeclarationError(`Route ${label(r)} is registered outside every security scope.`);
    }
  });
}

export interface ScopeOptions {
  /** The scope's name, recorded on its routes. */
  name: string;
  /** The kinds this scope's hooks enforce. */
  enforces: readonly AuthKind[];
  surface: AuditRecord['surface'];
  /** The scope's own hooks (authentication, authorization), installed before its routes. */
  hooks(scope: FastifyInstance): void;
  /** Hooks that must run after authorization and before the handler (the audit record of the attempt). */
  beforeHandler?: (req: FastifyRequest) => Promise<void> | void;
}

/**
 * Registers routes in an encapsulated scope whose hooks apply to them alone. The scope refuses, at
 * registration, any route whose declared kind it does not enforce.
 */
export function secureScope(app: FastifyInstance, opts: ScopeOptions, routes: (scope: FastifyInstance) => void | Promise<void>, prefix?: string): void {
  app.register(async (scope) => {
    scope.addHook('onRoute', (route) => {
      const kind = declaredAuth(route);
      if (!opts.enforces.includes(kind)) {
        throw new RouteDeclarationError(`Route ${label(route)} declares '${kind}', which the '${opts.name}' scope does not enforce (it enforces ${opts.enforces.join(', ')}).`);
      }
      route.config = { ...(route.config ?? {}), securedBy: opts.name, surface: opts.surface };
    });
    opts.hooks(scope);
    if (opts.beforeHandler) scope.addHook('preHandler', async (req) => opts.beforeHandler!(req));
    await routes(scope);
  }, prefix ? { prefix } : {});
}
