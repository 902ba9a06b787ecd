import type { Db } from '../store/db.js';
import type {
  AccessPolicy, EventSubscription, HsmState, KeyRecord, KeyVersion, RotationPolicy, Vault, VaultKind,
} from './vault.types.js';

const json = <T>(s: string | null): T | undefined => (s == null ? undefined : (JSON.parse(s) as T));
const opt = (n: number | null): number | undefined => (n == null ? undefined : n);

const toVault = (r: any): Vault => ({
  kind: r.kind ?? 'vault',
  hsm: json(r.hsm),
  id: r.id,
  tenantId: r.tenant_id,
  name: r.name,
  location: r.location,
  retentionDays: r.retention_days,
  purgeProtection: !!r.purge_protection,
  publicNetworkAccess: r.public_network_access,
  networkAcls: { defaultAction: r.default_action, bypass: r.bypass, ipRules: JSON.parse(r.ip_rules) },
  enableRbacAuthorization: !!r.enable_rbac_authorization,
  created: r.created,
  updated: r.updated,
  deletedAt: opt(r.deleted_at),
  scheduledPurge: opt(r.scheduled_purge),
});

const toKey = (r: any): KeyRecord => ({
  vaultId: r.vault_id,
  name: r.name,
  created: r.created,
  rotationPolicy: json<RotationPolicy>(r.rotation_policy),
  deletedAt: opt(r.deleted_at),
  scheduledPurge: opt(r.scheduled_purge),
});

const toVersion = (r: any): KeyVersion => ({
  vaultId: r.vault_id,
  name: r.name,
  version: r.version,
  seq: r.seq,
  kty: r.kty,
  keySize: r.key_size,
  keyOps: JSON.parse(r.key_ops),
  enabled: !!r.enabled,
  nbf: opt(r.nbf),
  exp: opt(r.exp),
  created: r.created,
  updated: r.updated,
  tags: json(r.tags),
  n: r.n,
  e: r.e,
  tokenKeyId: r.token_key_id ?? undefined,
});

const VERSION_COLUMNS = 'vault_id, name, version, seq, kty, key_size, key_ops, enabled, nbf, exp, created, updated, tags, n, e, token_key_id';

/** SQL for vaults, policies, keys and versions. Sealed private keys are read only through `sealedPrivate`. */
export function createVaultRepo(db: Db) {
  const s = {
    vaultById: db.prepare('SELECT * FROM vaults WHERE id = ?'),
    // Vault names are DNS labels: case-insensitive (a vault is found by the Host header naming it).
    vaultByName: db.prepare('SELECT * FROM vaults WHERE name = ? COLLATE NOCASE'),
    vaults: db.prepare('SELECT * FROM vaults WHERE tenant_id = ? AND kind = ? AND deleted_at IS NULL ORDER BY name'),
    deletedVaults: db.prepare('SELECT * FROM vaults WHERE tenant_id = ? AND kind = ? AND deleted_at IS NOT NULL ORDER BY name'),
    allVaults: db.prepare('SELECT * FROM vaults'),
    // The port column is from when each vault had its own listener (UNIQUE NOT NULL, and migrations are
    // append-only): a new vault stores a unique negative placeholder, never read.
    insertVault: db.prepare(`INSERT INTO vaults (id, tenant_id, name, location, port, retention_days, purge_protection,
      public_network_access, default_action, bypass, ip_rules, enable_rbac_authorization, created, updated, kind, hsm)
      VALUES (?,?,?,?,(SELECT MIN(0, COALESCE(MIN(port), 0)) - 1 FROM vaults),?,?,?,?,?,?,?,?,?,?,?)`),
    updateVault: db.prepare(`UPDATE vaults SET purge_protection = ?, public_network_access = ?, default_action = ?, bypass = ?,
      ip_rules = ?, enable_rbac_authorization = ?, updated = ?, deleted_at = ?, scheduled_purge = ?, hsm = ? WHERE id = ?`),
    deleteVault: db.prepare('DELETE FROM vaults WHERE id = ?'),
    swapHsm: db.prepare('UPDATE vaults SET hsm = ?, updated = ? WHERE id = ? AND hsm = ?'),
    anyHsm: db.prepare("SELECT 1 FROM vaults WHERE kind = 'managedHsm' LIMIT 1"),
    policies: db.prepare('SELECT * FROM access_policies WHERE vault_id = ? ORDER BY object_id'),
    policy: db.prepare('SELECT key_permissions FROM access_policies WHERE vault_id = ? AND object_id = ?'),
    upsertPolicy: db.prepare(`INSERT INTO access_policies (vault_id, tenant_id, object_id, key_permissions) VALUES (?,?,?,?)
      ON CONFLICT (vault_id, object_id) DO UPDATE SET key_permissions = excluded.key_permissions, tenant_id = excluded.tenant_id`),
    deletePolicy: db.prepare('DELETE FROM access_policies WHERE vault_id = ? AND object_id = ?'),
    key: db.prepare('SELECT * FROM keys WHERE vault_id = ? AND name = ?'),
    keys: db.prepare('SELECT * FROM keys WHERE vault_id = ? AND deleted_at IS NULL ORDER BY name LIMIT ? OFFSET ?'),
    deletedKeys: db.prepare('SELECT * FROM keys WHERE vault_id = ? AND deleted_at IS NOT NULL ORDER BY name LIMIT ? OFFSET ?'),
    allKeysWithPolicy: db.prepare('SELECT * FROM keys WHERE deleted_at IS NULL AND rotation_policy IS NOT NULL'),
    keysDueForPurge: db.prepare('SELECT * FROM keys WHERE deleted_at IS NOT NULL AND scheduled_purge <= ?'),
    insertKey: db.prepare('INSERT INTO keys (vault_id, name, created) VALUES (?, ?, ?)'),
    updateKeyState: db.prepare('UPDATE keys SET deleted_at = ?, scheduled_purge = ? WHERE vault_id = ? AND name = ?'),
    setRotationPolicy: db.prepare('UPDATE keys SET rotation_policy = ? WHERE vault_id = ? AND name = ?'),
    purgeKey: db.prepare('DELETE FROM keys WHERE vault_id = ? AND name = ?'),
    latest: db.prepare(`SELECT ${VERSION_COLUMNS} FROM key_versions WHERE vault_id = ? AND name = ? ORDER BY seq DESC LIMIT 1`),
    version: db.prepare(`SELECT ${VERSION_COLUMNS} FROM key_versions WHERE vault_id = ? AND name = ? AND version = ?`),
    versions: db.prepare(`SELECT ${VERSION_COLUMNS} FROM key_versions WHERE vault_id = ? AND name = ? ORDER BY seq LIMIT ? OFFSET ?`),
    allVersions: db.prepare(`SELECT ${VERSION_COLUMNS} FROM key_versions WHERE vault_id = ? AND name = ? ORDER BY seq`),
    maxSeq: db.prepare('SELECT COALESCE(MAX(seq), 0) AS m FROM key_versions WHERE vault_id = ? AND name = ?'),
    insertVersion: db.prepare(`INSERT INTO key_versions (vault_id, name, version, seq, kty, key_size, key_ops, enabled, nbf, exp,
      created, updated, tags, n, e, sealed_private, token_key_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`),
    // A changed expiry re-arms the near-expiry and expired events (SQLite evaluates every SET against the old row).
    updateVersion: db.prepare(`UPDATE key_versions SET
      near_expiry_notified = CASE WHEN exp IS ? THEN near_expiry_notified ELSE 0 END,
      expired_notified = CASE WHEN exp IS ? THEN expired_notified ELSE 0 END,
      key_ops = ?, enabled = ?, nbf = ?, exp = ?, tags = ?, updated = ?
      WHERE vault_id = ? AND name = ? AND version = ?`),
    keyTokenIds: db.prepare('SELECT token_key_id FROM key_versions WHERE vault_id = ? AND name = ? AND token_key_id IS NOT NULL'),
    tokenKeyIds: db.prepare('SELECT token_key_id FROM key_versions WHERE vault_id = ? AND token_key_id IS NOT NULL'),
    sealedPrivate: db.prepare('SELECT sealed_private FROM key_versions WHERE vault_id = ? AND name = ? AND version = ?'),
    expiryWatch: db.prepare(`SELECT v.vault_id, v.name, v.version, v.exp, v.near_expiry_notified, v.expired_notified
      FROM key_versions v JOIN keys k ON k.vault_id = v.vault_id AND k.name = v.name
      WHERE k.deleted_at IS NULL AND v.exp IS NOT NULL AND (v.near_expiry_notified = 0 OR v.expired_notified = 0)`),
    markNotified: db.prepare(`UPDATE key_versions SET near_expiry_notified = MAX(near_expiry_notified, ?),
      expired_notified = MAX(expired_notified, ?) WHERE vault_id = ? AND name = ? AND version = ?`),
    subscriptions: db.prepare('SELECT * FROM event_subscriptions WHERE vault_id = ? ORDER BY name'),
    upsertSubscription: db.prepare(`INSERT INTO event_subscriptions (vault_id, name, endpoint, event_types, created) VALUES (?,?,?,?,?)
      ON CONFLICT (vault_id, name) DO UPDATE SET endpoint = excluded.endpoint, event_types = excluded.event_types`),
    deleteSubscription: db.prepare('DELETE FROM event_subscriptions WHERE vault_id = ? AND name = ?'),
  };

  const toSub = (r: any): EventSubscription => ({
    vaultId: r.vault_id, name: r.name, endpoint: r.endpoint, eventTypes: JSON.parse(r.event_types), created: r.created,
  });

  return {
    transaction: <T>(fn: () => T): T => db.transaction(fn)(),

    vault: (id: string) => { const r = s.vaultById.get(id); return r ? toVault(r) : undefined; },
    vaultByName: (name: string) => { const r = s.vaultByName.get(name); return r ? toVault(r) : undefined; },
    vaults: (tenantId: string, kind: VaultKind = 'vault') => s.vaults.all(tenantId, kind).map(toVault),
    deletedVaults: (tenantId: string, kind: VaultKind = 'vault') => s.deletedVaults.all(tenantId, kind).map(toVault),
    allVaults: () => s.allVaults.all().map(toVault),
    insertVault: (v: Vault) => void s.insertVault.run(
      v.id, v.tenantId, v.name, v.location, v.retentionDays, v.purgeProtection ? 1 : 0, v.publicNetworkAccess,
      v.networkAcls.defaultAction, v.networkAcls.bypass, JSON.stringify(v.networkAcls.ipRules), v.enableRbacAuthorization ? 1 : 0, v.created, v.updated,
      v.kind, v.hsm ? JSON.stringify(v.hsm) : null,
    ),
    saveVault: (v: Vault) => void s.updateVault.run(
      v.purgeProtection ? 1 : 0, v.publicNetworkAccess, v.networkAcls.defaultAction, v.networkAcls.bypass,
      JSON.stringify(v.networkAcls.ipRules), v.enableRbacAuthorization ? 1 : 0, v.updated, v.deletedAt ?? null, v.scheduledPurge ?? null,
      v.hsm ? JSON.stringify(v.hsm) : null, v.id,
    ),
    deleteVault: (id: string) => void s.deleteVault.run(id),
    /**
     * Replaces a managed HSM's own state only if it is still `before` (compare and swap), touching no other
     * column: a concurrent update of its network rules, purge protection or deletion is never written over.
     */
    /** Whether any managed HSM (live or soft-deleted) exists: its keys are in the configured token. */
    anyHsm: (): boolean => s.anyHsm.get() !== undefined,
    swapHsm: (id: string, before: HsmState, after: HsmState, updated: number): boolean =>
      s.swapHsm.run(JSON.stringify(after), updated, id, JSON.stringify(before)).changes === 1,

    policies: (vaultId: string): AccessPolicy[] => (s.policies.all(vaultId) as any[]).map((r) => ({
      tenantId: r.tenant_id, objectId: r.object_id, keyPermissions: JSON.parse(r.key_permissions),
    })),
    permissionsOf: (vaultId: string, objectId: string): string[] => {
      const r = s.policy.get(vaultId, objectId) as { key_permissions: string } | undefined;
      return r ? JSON.parse(r.key_permissions) : [];
    },
    upsertPolicy: (vaultId: string, p: AccessPolicy) =>
      void s.upsertPolicy.run(vaultId, p.tenantId, p.objectId, JSON.stringify(p.keyPermissions)),
    deletePolicy: (vaultId: string, objectId: string) => s.deletePolicy.run(vaultId, objectId).changes > 0,

    key: (vaultId: string, name: string) => { const r = s.key.get(vaultId, name); return r ? toKey(r) : undefined; },
    keys: (vaultId: string, limit: number, offset: number) => s.keys.all(vaultId, limit, offset).map(toKey),
    deletedKeys: (vaultId: string, limit: number, offset: number) => s.deletedKeys.all(vaultId, limit, offset).map(toKey),
    keysWithRotationPolicy: () => s.allKeysWithPolicy.all().map(toKey),
    keysDueForPurge: (now: number) => s.keysDueForPurge.all(now).map(toKey),
    insertKey: (vaultId: string, name: string, created: number) => void s.insertKey.run(vaultId, name, created),
    setKeyDeleted: (vaultId: string, name: string, deletedAt: number | null, scheduledPurge: number | null) =>
      void s.updateKeyState.run(deletedAt, scheduledPurge, vaultId, name),
    setRotationPolicy: (vaultId: string, name: string, p: RotationPolicy) =>
      void s.setRotationPolicy.run(JSON.stringify(p), vaultId, name),
    purgeKey: (vaultId: string, name: string) => void s.purgeKey.run(vaultId, name),

    latestVersion: (vaultId: string, name: string) => { const r = s.latest.get(vaultId, name); return r ? toVersion(r) : undefined; },
    version: (vaultId: string, name: string, version: string) => {
      const r = s.version.get(vaultId, name, version); return r ? toVersion(r) : undefined;
    },
    versions: (vaultId: string, name: string, limit: number, offset: number) => s.versions.all(vaultId, name, limit, offset).map(toVersion),
    allVersions: (vaultId: string, name: string) => s.allVersions.all(vaultId, name).map(toVersion),
    nextSeq: (vaultId: string, name: string) => (s.maxSeq.get(vaultId, name) as { m: number }).m + 1,
    /** A version with its sealed private key (a vault key), or with none and its token key id (an HSM key). */
    insertVersion: (v: KeyVersion, sealedPrivate: Buffer | null) => void s.insertVersion.run(
      v.vaultId, v.name, v.version, v.seq, v.kty, v.keySize, JSON.stringify(v.keyOps), v.enabled ? 1 : 0, v.nbf ?? null,
      v.exp ?? null, v.created, v.updated, v.tags ? JSON.stringify(v.tags) : null, v.n, v.e, sealedPrivate ?? Buffer.alloc(0), v.tokenKeyId ?? null,
    ),
    saveVersion: (v: KeyVersion) => void s.updateVersion.run(
      v.exp ?? null, v.exp ?? null, JSON.stringify(v.keyOps), v.enabled ? 1 : 0, v.nbf ?? null, v.exp ?? null, v.tags ? JSON.stringify(v.tags) : null,
      v.updated, v.vaultId, v.name, v.version,
    ),
    /** The token key ids (CKA_ID) of every version of every key of an HSM. */
    tokenKeyIds: (vaultId: string): string[] => (s.tokenKeyIds.all(vaultId) as { token_key_id: string }[]).map((r) => r.token_key_id),
    /** The token key ids of one key's versions (its purge destroys them). */
    keyTokenIds: (vaultId: string, name: string): string[] => (s.keyTokenIds.all(vaultId, name) as { token_key_id: string }[]).map((r) => r.token_key_id),
    sealedPrivate: (vaultId: string, name: string, version: string) =>
      (s.sealedPrivate.get(vaultId, name, version) as { sealed_private: Buffer } | undefined)?.sealed_private,
    expiryWatch: () => s.expiryWatch.all() as {
      vault_id: string; name: string; version: string; exp: number; near_expiry_notified: number; expired_notified: number;
    }[],
    markNotified: (vaultId: string, name: string, version: string, near: boolean, expired: boolean) =>
      void s.markNotified.run(near ? 1 : 0, expired ? 1 : 0, vaultId, name, version),

    subscriptions: (vaultId: string) => s.subscriptions.all(vaultId).map(toSub),
    upsertSubscription: (sub: EventSubscription) =>
      void s.upsertSubscription.run(sub.vaultId, sub.name, sub.endpoint, JSON.stringify(sub.eventTypes), sub.created),
    deleteSubscription: (vaultId: string, name: string) => s.deleteSubscription.run(vaultId, name).changes > 0,
  };
}

export type VaultRepo = ReturnType<typeof createVaultRepo>;
