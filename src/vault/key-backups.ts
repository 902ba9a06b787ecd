import { errors } from '../lib/errors.js';
import type { Barrier } from '../barrier/barrier.js';
import type { HsmKeys } from '../hsm/hsm-keys.js';
import type { EventBus } from './events.js';
import type { VaultRepo } from './vault.repo.js';
import type { KeyRecord, KeyVersion, RotationPolicy, Vault } from './vault.types.js';
import { openKeyBackup, sealKeyBackup } from './key-backup.js';

/**
 * Key backup and restore. A vault key's blob holds every version's PKCS#8 under a per-tenant subkey of the
 * master key (it restores into any vault of the same tenant of this installation); a managed HSM key's blob
 * holds every version wrapped by the token under the HSM's security-domain key (it restores into an HSM
 * holding the same security domain). Either way the restored rows are written in one transaction.
 */
export function createKeyBackups(d: {
  repo: VaultRepo;
  barrier: Barrier;
  events: EventBus;
  hsm: () => HsmKeys;
  sealAad: (vaultId: string, name: string, version: string) => string;
  liveKey: (vault: Vault, name: string) => KeyRecord;
}) {
  const { repo, barrier } = d;
  const backupKeyFor = (tenantId: string) => barrier.deriveKey('key-backup', tenantId);

  /** Writes a restored key and its versions (sealed private keys, or none for token keys); refuses a taken name. */
  const store = (vault: Vault, name: string, created: number, rotationPolicy: RotationPolicy | undefined, rows: { version: KeyVersion; sealed: Buffer | null }[]) => {
    repo.transaction(() => {
      if (repo.key(vault.id, name)) {
        throw errors.conflict(`Key ${name} already exists in this ${vault.kind === 'managedHsm' ? 'HSM' : 'vault'} (or is soft-deleted); delete and purge it before restoring.`, 'KeyAlreadyExists');
      }
      repo.insertKey(vault.id, name, created);
      if (rotationPolicy) repo.setRotationPolicy(vault.id, name, rotationPolicy);
      for (const r of rows) repo.insertVersion(r.version, r.sealed);
    });
    const latest = repo.latestVersion(vault.id, name)!;
    d.events.emit(vault, 'Microsoft.KeyVault.KeyNewVersionCreated', { objectType: 'Key', objectName: name, version: latest.version });
    return latest;
  };

  return {
    backup(vault: Vault, name: string): Promise<string> | string {
      const k = d.liveKey(vault, name);
      if (vault.kind === 'managedHsm') return d.hsm().backup(vault, k, repo.allVersions(vault.id, name));
      const versions = repo.allVersions(vault.id, name).map((v) => {
        const der = barrier.unseal(repo.sealedPrivate(vault.id, name, v.version)!, d.sealAad(vault.id, name, v.version));
        const { vaultId: _vid, ...rest } = v;
        return { ...rest, pkcs8: der.toString('base64') };
      });
      return sealKeyBackup(backupKeyFor(vault.tenantId), vault.tenantId, { name, created: k.created, rotationPolicy: k.rotationPolicy, versions });
    },

    async restore(vault: Vault, blob: string): Promise<KeyVersion> {
      if (vault.kind === 'managedHsm') {
        const payload = await d.hsm().restore(vault, blob);
        try {
          return store(vault, payload.name, payload.created, payload.rotationPolicy, payload.versions.map((version) => ({ version, sealed: null })));
        } catch (e) {
          await d.hsm().destroy(payload.versions.map((v) => v.tokenKeyId!));
          throw e;
        }
      }
      const payload = openKeyBackup(blob, vault.tenantId, backupKeyFor);
      const rows = payload.versions.map(({ pkcs8, ...fields }) => {
        const der = Buffer.from(pkcs8, 'base64');
        const sealed = barrier.seal(der, d.sealAad(vault.id, payload.name, fields.version));
        der.fill(0);
        return { version: { ...fields, vaultId: vault.id }, sealed };
      });
      return store(vault, payload.name, payload.created, payload.rotationPolicy, rows);
    },
  };
}
