/**
 * ARM scopes as role assignments use them: `/` (pgbyok: the whole tenant), `/subscriptions/{s}`,
 * `/subscriptions/{s}/resourceGroups/{g}`, `/subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{type}/{name}`.
 * Comparisons are case-insensitive, as ARM's are.
 */
export const ROOT_SCOPE = '/';

const trim = (s: string) => s.toLowerCase().replace(/\/+$/, '');

/** Does an assignment made at `outer` count at `inner`? (The scope itself, or anything below it.) */
export function scopeContains(outer: string, inner: string): boolean {
  if (outer === ROOT_SCOPE) return true;
  const o = trim(outer);
  const i = trim(inner);
  return i === o || i.startsWith(`${o}/`);
}

/** The subscription a scope is in, if any. */
export function subscriptionOfScope(scope: string): string | undefined {
  return /^\/subscriptions\/([^/]+)/i.exec(scope)?.[1];
}

const segmentsOf = (path: string) => {
  const q = path.indexOf('?');
  return (q < 0 ? path : path.slice(0, q)).split('/').filter(Boolean).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
};
const eq = (a: string | undefined, b: string) => a !== undefined && a.toLowerCase() === b.toLowerCase();

/**
 * The scope a management request addresses, from its path: the subscription, group or top-level resource it
 * names (a child or extension resource counts as its parent's: `.../vaults/kv/accessPolicies/add` is the
 * vault's). A `/tenants/{tid}/providers/{ns}/{type}/{name}` path names a resource without its group: it is
 * answered as `tenantResource`, for the caller to find where the resource sits.
 */
export function addressedScope(path: string): { scope: string; tenantResource?: { type: string; name: string } } {
  const s = segmentsOf(path);
  if (eq(s[0], 'subscriptions') && s[1]) {
    let scope = `/subscriptions/${s[1]}`;
    if (eq(s[2], 'resourceGroups') && s[3]) {
      scope += `/resourceGroups/${s[3]}`;
      if (eq(s[4], 'providers') && s[5] && s[6] && s[7]) scope += `/providers/${s[5]}/${s[6]}/${s[7]}`;
    }
    return { scope };
  }
  if (eq(s[0], 'tenants') && eq(s[2], 'providers') && s[3] && s[4] && s[5]) return { scope: ROOT_SCOPE, tenantResource: { type: `${s[3]}/${s[4]}`, name: s[5] } };
  return { scope: ROOT_SCOPE };
}

/** The Azure action a management request stands for (`Microsoft.KeyVault/vaults/write`), for refusal messages. */
export function actionOf(method: string, path: string): string {
  const s = segmentsOf(path);
  let ns = 'Microsoft.Resources';
  let rest = s;
  for (let i = s.length - 2; i >= 0; i--) {
    if (eq(s[i], 'providers')) {
      ns = s[i + 1];
      rest = s.slice(i + 2);
      break;
    }
  }
  const types = rest.filter((_, k) => k % 2 === 0);
  const verb = method === 'GET' || method === 'HEAD' ? 'read' : method === 'DELETE' ? 'delete' : method === 'POST' ? 'action' : 'write';
  return [ns, ...types, verb].join('/');
}
