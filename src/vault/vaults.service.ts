import { randomUUID } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { errors } from '../lib/errors.js';
import { nowSeconds, systemClock, type Clock } from '../lib/clock.js';
import type { EventBus } from './events.js';
import type { VaultRepo } from './vault.repo.js';
import {
  KEY_PERMISSIONS, VAULT_EVENT_TYPES, type AccessPolicy, type HsmState, type KeyPermission, type NetworkAcls, type Vault, type VaultKind,
} from './vault.types.js';

const VAULT_NAME_RE = /^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$/;
const SUB_NAME_RE = /^[A-Za-z0-9-]{3,64}$/;
const DAY = 86400;

export interface CreateVaultInput {
  name: string;
  location: string;
  retentionDays?: number;
  purgeProtection?: boolean;
  publicNetworkAccess?: 'Enabled' | 'Disabled';
  networkAcls?: Partial<NetworkAcls>;
  enableRbacAuthorization?: boolean;
  /** The whole access-policy list (ARM's PUT), checked with the rest and written with the vault. */
  policies?: { objectId: string; tenantId?: string; keyPermissions: string[] }[];
  /** A Managed HSM's own state (the service's kind is managedHsm). */
  hsm?: HsmState;
  /** Written in the same transaction as the vault (an HSM's initial administrators). */
  alsoWrite?: (v: Vault) => void;
}

export interface UpdateVaultInput {
  purgeProtection?: boolean;
  /** Switches the data plane between access policies (false) and role assignments (true); either way is an access change. */
  enableRbacAuthorization?: boolean;
  publicNetworkAccess?: 'Enabled' | 'Disabled';
  networkAcls?: Partial<NetworkAcls>;
  retentionDays?: number;
}

/** Normalises an IP rule to CIDR form and rejects anything else, so the firewall never guesses. */
export function normaliseIpRule(rule: string): string {
  const [addr, prefix] = rule.split('/');
  const family = isIP(addr);
  if (!family) throw errors.badParameter(`'${rule}' is not an IP address or CIDR range.`);
  const max = family === 4 ? 32 : 128;
  const bits = prefix === undefined ? max : Number(prefix);
  if (!Number.isInteger(bits) || bits < 0 || bits > max || (prefix !== undefined && !/^\d+$/.test(prefix))) {
    throw errors.badParameter(`'${rule}' has an invalid prefix length.`);
  }
  return `${addr}/${bits}`;
}

function checkAcls(input: Partial<NetworkAcls> | undefined, base: NetworkAcls): NetworkAcls {
  const acls = { ...base, ...(input ?? {}) };
  if (!['Allow', 'Deny'].includes(acls.defaultAction)) throw errors.badParameter(`defaultAction must be Allow or Deny, not '${acls.defaultAction}'.`);
  if (!['AzureServices', 'None'].includes(acls.bypass)) throw errors.badParameter(`bypass must be AzureServices or None, not '${acls.bypass}'.`);
  if (!Array.isArray(acls.ipRules)) throw errors.badParameter('ipRules must be a list.');
  return { ...acls, ipRules: [...new Set(acls.ipRules.map(normaliseIpRule))] };
}

function checkNetworkAccess(v: string | undefined): 'Enabled' | 'Disabled' | undefined {
  if (v === undefined) return undefined;
  if (v !== 'Enabled' && v !== 'Disabled') throw errors.badParameter(`publicNetworkAccess must be Enabled or Disabled, not '${v}'.`);
  return v;
}

export function expandPermissions(perms: string[]): KeyPermission[] {
  if (perms.some((p) => p.toLowerCase() === 'all')) return [...KEY_PERMISSIONS];
  return [...new Set(perms.map((p) => {
    const match = KEY_PERMISSIONS.find((k) => k.toLowerCase() === p.toLowerCase());
    if (!match) throw errors.badParameter(`Unknown key permission '${p}'. Valid: ${KEY_PERMISSIONS.join(', ')}, all.`);
    return match;
  }))];
}

export interface VaultServiceDeps {
  repo: VaultRepo;
  events: EventBus;
  principalExists: (tenantId: string, objectId: string) => boolean;
  /** The source of "now" for soft-delete and purge dates (the system clock by default). */
  clock?: Clock;
  /**
   * Which kind of vault this service keeps: 'vault' (Key Vault) or 'managedHsm' (Managed HSM, the same
   * lifecycle: soft-delete, recover, purge, firewall, events). Each service sees only its own kind.
   */
  kind?: VaultKind;
  /** Called once a vault's rows are purged, with the vault as it was (an HSM destroys its token keys). */
  purged?: (v: Vault, tokenKeyIds: string[]) => void;
}

/**
 * Vault resources: creation, network rules, access policies, soft-delete, events. Every live vault is served
 * by the one vault listener under its DNS name; nothing here opens or closes a port.
 */
export function createVaultService({ repo, events, principalExists, clock = systemClock, kind = 'vault', purged }: VaultServiceDeps) {
  const now = () => nowSeconds(clock);
  const firewallCache = new Map<string, { rules: string; list: BlockList }>();
  const noun = kind === 'vault' ? 'vault' : 'managed HSM';
  /** A vault of this service's kind by name, live or soft-deleted. */
  const named = (name: string): Vault | undefined => {
    const v = repo.vaultByName(name);
    return v && v.kind === kind ? v : undefined;
  };

  const get = (tenantId: string, name: string): Vault => {
    const v = named(name);
    if (!v || v.tenantId !== tenantId || v.deletedAt != null) {
      throw errors.notFound('ResourceNotFound', `The ${noun} '${name}' was not found in this tenant.`);
    }
    return v;
  };

  /** Removes a vault's rows; the purged hook learns which token keys its versions held. */
  const purgeRows = (v: Vault) => {
    const tokenKeyIds = repo.tokenKeyIds(v.id);
    repo.deleteVault(v.id);
    purged?.(v, tokenKeyIds);
  };

  const save = (v: Vault) => {
    v.updated = now();
    repo.saveVault(v);
    return v;
  };

  /** Checks an update and applies it to `v` (not saved); true when the network rules change. */
  const applyUpdate = (v: Vault, input: UpdateVaultInput): boolean => {
    if (input.enableRbacAuthorization !== undefined) v.enableRbacAuthorization = input.enableRbacAuthorization;
    if (input.retentionDays !== undefined && input.retentionDays !== v.retentionDays) {
      throw errors.badParameter('softDeleteRetentionInDays cannot be changed after the vault is created; create a new vault.');
    }
    if (input.purgeProtection === false && v.purgeProtection) {
      throw errors.badParameter('The property "enablePurgeProtection" cannot be set to false. Enabling the purge protection for a vault is an irreversible action.', 'PurgeProtectionCannotBeDisabled');
    }
    if (input.purgeProtection) v.purgeProtection = true;
    const pna = checkNetworkAccess(input.publicNetworkAccess);
    if (pna) v.publicNetworkAccess = pna;
    if (input.networkAcls) v.networkAcls = checkAcls(input.networkAcls, v.networkAcls);
    return pna !== undefined || input.networkAcls !== undefined;
  };

  /** One access-policy entry, checked: the vault's tenant, an existing principal, known permissions. */
  const checkPolicy = (v: Vault, p: { objectId: string; tenantId?: string; keyPermissions: string[] }, kind: string) => {
    if ((p.tenantId ?? v.tenantId) !== v.tenantId) {
      throw errors.badParameter(`Access policies may only name principals of the vault's tenant ${v.tenantId}.`);
    }
    if (kind !== 'remove' && !principalExists(v.tenantId, p.objectId)) {
      throw errors.badParameter(`No principal with object id '${p.objectId}' exists in tenant ${v.tenantId}.`);
    }
    return { objectId: p.objectId, keyPermissions: expandPermissions(p.keyPermissions) as KeyPermission[] };
  };

  return {
    get,
    kind,
    list: (tenantId: string) => repo.vaults(tenantId, kind),
    listDeleted: (tenantId: string) => repo.deletedVaults(tenantId, kind),
    /** A vault by name (case-insensitive), live or soft-deleted, in any tenant (the vault listener and trusted routes). */
    byName: named,
    /** A live vault by name, in any tenant (for public name resolution only). */
    lookup: (name: string) => {
      const v = named(name);
      return v && v.deletedAt == null ? v : undefined;
    },
    /** Whether a vault or managed HSM (live or soft-deleted) has this name: the two share one namespace here. */
    nameTaken: (name: string) => repo.vaultByName(name) !== undefined,
    byId: (id: string) => {
      const v = repo.vault(id);
      return v && v.kind === kind ? v : undefined;
    },
    /** Replaces an HSM's own state if nobody changed it since `v` was read; false when someone did. */
    swapHsm: (v: Vault, next: HsmState): boolean => repo.swapHsm(v.id, v.hsm!, next, now()),
    policies: (v: Vault) => repo.policies(v.id),
    permissionsOf: (v: Vault, objectId: string) => repo.permissionsOf(v.id, objectId),

    async create(tenantId: string, input: CreateVaultInput, creatorObjectId?: string): Promise<Vault> {
      if (!VAULT_NAME_RE.test(input.name)) {
        throw errors.badParameter(`The ${noun} name '${input.name}' is invalid: 3-24 letters, digits and '-', starting with a letter and not ending with '-'.`, kind === 'vault' ? 'VaultNameNotValid' : 'InvalidResourceName');
      }
      if (repo.vaultByName(input.name)) {
        throw errors.conflict(`The name '${input.name}' is already in use (vault and managed HSM names are unique, including soft-deleted ones).`, kind === 'vault' ? 'VaultAlreadyExists' : 'ConflictError');
      }
      const retentionDays = input.retentionDays ?? 90;
      if (!Number.isInteger(retentionDays) || retentionDays < 7 || retentionDays > 90) {
        throw errors.badParameter(`softDeleteRetentionInDays must be a whole number from 7 to 90, not ${retentionDays}.`);
      }
      if (!input.location || !/^[a-z0-9]{2,40}$/.test(input.location)) {
        throw errors.badParameter(`location '${input.location}' is invalid: use a lowercase region name such as eastus.`);
      }
      const networkAcls = checkAcls(input.networkAcls, { defaultAction: 'Allow', bypass: 'AzureServices', ipRules: [] });
      const publicNetworkAccess = checkNetworkAccess(input.publicNetworkAccess) ?? 'Enabled';
      const t = now();
      const vault: Vault = {
        kind, hsm: input.hsm, id: randomUUID(), tenantId, name: input.name, location: input.location, retentionDays,
        purgeProtection: !!input.purgeProtection, publicNetworkAccess, networkAcls, enableRbacAuthorization: !!input.enableRbacAuthorization, created: t, updated: t,
      };
      const policies = input.policies?.map((p) => checkPolicy(vault, p, 'replace')).filter((p) => p.keyPermissions.length > 0);
      repo.transaction(() => {
        repo.insertVault(vault);
        // As `az keyvault create` does: without a list, the creator gets every key permission (an RBAC vault has no use for one).
        if (policies) for (const p of policies) repo.upsertPolicy(vault.id, { tenantId, objectId: p.objectId, keyPermissions: p.keyPermissions });
        else if (creatorObjectId && !vault.enableRbacAuthorization) repo.upsertPolicy(vault.id, { tenantId, objectId: creatorObjectId, keyPermissions: [...KEY_PERMISSIONS] });
        input.alsoWrite?.(vault);
      });
      return vault;
    },

    /**
     * ARM's PUT on an existing vault (az keyvault set-policy, update, network-rule): its mutable properties
     * and, when given, the whole access-policy list, exactly as sent. Everything is checked before anything
     * is written, and written in one transaction.
     */
    replace(tenantId: string, name: string, input: UpdateVaultInput, policies?: { objectId: string; tenantId?: string; keyPermissions: string[] }[]): Vault {
      const v = get(tenantId, name);
      const next: Vault = { ...v, networkAcls: { ...v.networkAcls, ipRules: [...v.networkAcls.ipRules] } };
      const networkChanged = applyUpdate(next, input);
      const wanted = policies?.map((p) => checkPolicy(v, p, 'replace'));
      const before = JSON.stringify(repo.policies(v.id).map((p) => [p.objectId, [...p.keyPermissions].sort()]).sort());
      repo.transaction(() => {
        save(next);
        if (wanted) {
          for (const current of repo.policies(v.id)) if (!wanted.some((w) => w.objectId === current.objectId)) repo.deletePolicy(v.id, current.objectId);
          for (const w of wanted) {
            if (w.keyPermissions.length === 0) repo.deletePolicy(v.id, w.objectId);
            else repo.upsertPolicy(v.id, { tenantId: v.tenantId, objectId: w.objectId, keyPermissions: w.keyPermissions });
          }
        }
      });
      if (networkChanged) events.emit(next, 'Microsoft.KeyVault.VaultNetworkRulesChanged', { objectType: 'Vault', objectName: v.name });
      const after = JSON.stringify(repo.policies(v.id).map((p) => [p.objectId, [...p.keyPermissions].sort()]).sort());
      if (before !== after || v.enableRbacAuthorization !== next.enableRbacAuthorization) events.emit(next, 'Microsoft.KeyVault.VaultAccessPolicyChanged', { objectType: 'Vault', objectName: v.name });
      return next;
    },

    /** add: union of permissions; replace: exactly these; remove: take these away (none left removes the entry). */
    updatePolicies(tenantId: string, name: string, kind: 'add' | 'replace' | 'remove', policies: { objectId: string; tenantId?: string; keyPermissions: string[] }[]): Vault {
      const v = get(tenantId, name);
      if (!['add', 'replace', 'remove'].includes(kind)) throw errors.badParameter(`Access policy operation must be add, replace or remove, not '${kind}'.`);
      repo.transaction(() => {
        for (const p of policies) {
          const perms = checkPolicy(v, p, kind).keyPermissions;
          const current = repo.permissionsOf(v.id, p.objectId) as KeyPermission[];
          const next = kind === 'replace' ? perms : kind === 'add' ? [...new Set([...current, ...perms])] : current.filter((c) => !perms.includes(c));
          if (next.length === 0) repo.deletePolicy(v.id, p.objectId);
          else repo.upsertPolicy(v.id, { tenantId: v.tenantId, objectId: p.objectId, keyPermissions: next } satisfies AccessPolicy);
        }
        save(v);
      });
      events.emit(v, 'Microsoft.KeyVault.VaultAccessPolicyChanged', { objectType: 'Vault', objectName: v.name });
      return v;
    },

    async delete(tenantId: string, name: string): Promise<Vault> {
      const v = get(tenantId, name);
      const t = now();
      v.deletedAt = t;
      v.scheduledPurge = t + v.retentionDays * DAY;
      save(v);
      events.emit(v, 'Microsoft.KeyVault.VaultDeleted', { objectType: 'Vault', objectName: v.name });
      return v;
    },

    async recover(tenantId: string, name: string): Promise<Vault> {
      const v = named(name);
      if (!v || v.tenantId !== tenantId || v.deletedAt == null) {
        throw errors.notFound('ResourceNotFound', `No deleted ${noun} '${name}' exists in this tenant.`);
      }
      v.deletedAt = undefined;
      v.scheduledPurge = undefined;
      save(v);
      events.emit(v, 'Microsoft.KeyVault.VaultRecovered', { objectType: 'Vault', objectName: v.name });
      return v;
    },

    purge(tenantId: string, name: string, force = false): void {
      const v = named(name);
      if (!v || v.tenantId !== tenantId || v.deletedAt == null) {
        throw errors.notFound('ResourceNotFound', `No deleted ${noun} '${name}' exists in this tenant.`);
      }
      if (v.purgeProtection && !force) {
        throw errors.conflict(`The ${noun} '${name}' has purge protection; it will be purged automatically on ${new Date(v.scheduledPurge! * 1000).toISOString()}.`, 'PurgeProtectionEnabled');
      }
      purgeRows(v);
    },

    /** Purges vaults of this kind whose retention has run out. */
    purgeExpired(): void {
      const t = now();
      for (const v of repo.allVaults()) if (v.kind === kind && v.deletedAt != null && v.scheduledPurge! <= t) purgeRows(v);
    },

    /**
     * The vault firewall. Public access disabled admits only trusted services (when bypass allows them);
     * default action Deny admits the IP rules and trusted services; Allow admits everyone.
     */
    admits(v: Vault, sourceAddress: string, trustedService: boolean): boolean {
      const trustedOk = trustedService && v.networkAcls.bypass === 'AzureServices';
      if (v.publicNetworkAccess === 'Disabled') return trustedOk;
      if (v.networkAcls.defaultAction === 'Allow') return true;
      if (trustedOk) return true;
      const rules = v.networkAcls.ipRules.join(',');
      let entry = firewallCache.get(v.id);
      if (!entry || entry.rules !== rules) {
        const list = new BlockList();
        for (const rule of v.networkAcls.ipRules) {
          const [addr, bits] = rule.split('/');
          list.addSubnet(addr, Number(bits), isIP(addr) === 6 ? 'ipv6' : 'ipv4');
        }
        entry = { rules, list };
        firewallCache.set(v.id, entry);
      }
      const addr = sourceAddress.startsWith('::ffff:') ? sourceAddress.slice(7) : sourceAddress;
      return entry.list.check(addr, isIP(addr) === 6 ? 'ipv6' : 'ipv4');
    },

    /**
     * Tells the vault's subscribers that who may use it changed without its access policies changing (a role
     * assignment at its scope or above): the same event, so the key monitor re-checks at once.
     */
    announceAccessChange(v: Vault): void {
      events.emit(v, 'Microsoft.KeyVault.VaultAccessPolicyChanged', { objectType: 'Vault', objectName: v.name });
    },

    subscriptions: (tenantId: string, name: string) => repo.subscriptions(get(tenantId, name).id),

    putSubscription(tenantId: string, vaultName: string, name: string, endpoint: string, eventTypes: string[] = []) {
      const v = get(tenantId, vaultName);
      if (!SUB_NAME_RE.test(name)) throw errors.badParameter(`Event subscription name '${name}' is invalid: 3-64 letters, digits and '-'.`);
      let url: URL;
      try {
        url = new URL(endpoint);
      } catch {
        throw errors.badParameter(`'${endpoint}' is not a URL.`);
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw errors.badParameter('The endpoint must be an http(s) URL.');
      if (!Array.isArray(eventTypes) || !eventTypes.every((t) => typeof t === 'string')) {
        throw errors.badParameter('filter.includedEventTypes must be a list of event type names.');
      }
      const types = eventTypes.map((t) => {
        const full = t.startsWith('Microsoft.KeyVault.') ? t : `Microsoft.KeyVault.${t}`;
        if (!(VAULT_EVENT_TYPES as readonly string[]).includes(full)) {
          throw errors.badParameter(`Unknown event type '${t}'. Known: ${VAULT_EVENT_TYPES.join(', ')}.`);
        }
        return full;
      });
      const sub = { vaultId: v.id, name, endpoint: url.toString(), eventTypes: types, created: now() };
      repo.upsertSubscription(sub);
      return sub;
    },

    deleteSubscription(tenantId: string, vaultName: string, name: string): void {
      const v = get(tenantId, vaultName);
      if (!repo.deleteSubscription(v.id, name)) throw errors.notFound('ResourceNotFound', `No event subscription '${name}' on vault '${vaultName}'.`);
    },
  };
}

export type VaultService = ReturnType<typeof createVaultService>;
