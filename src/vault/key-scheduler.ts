import { parseDurationSeconds } from '../lib/duration.js';
import type { EventBus } from './events.js';
import { DEFAULT_ROTATION_POLICY } from './keys.wire.js';
import type { VaultRepo } from './vault.repo.js';
import type { Vault } from './vault.types.js';

/**
 * The key scheduler's rules and its pass over every vault: purge of soft-deleted keys past their date,
 * the KeyNearExpiry / KeyExpired events a key version is owed, and rotation by a key's rotation policy.
 * The key service runs a pass (`tick`) and supplies the purge and rotation it already knows how to do.
 */

const DAY = 86400;

/**
 * The one expiry event a scheduler pass owes a key version, if any: KeyExpired once it is past its expiry
 * (and then never a late KeyNearExpiry, even if no pass saw it near), else KeyNearExpiry once it is within
 * `windowSeconds` of it. Never both for one version in one pass.
 */
export function expiryEventDue(
  v: { exp: number; nearNotified: boolean; expiredNotified: boolean }, windowSeconds: number, t: number,
): 'Microsoft.KeyVault.KeyExpired' | 'Microsoft.KeyVault.KeyNearExpiry' | undefined {
  if (t >= v.exp) return v.expiredNotified ? undefined : 'Microsoft.KeyVault.KeyExpired';
  if (t >= v.exp - windowSeconds && !v.nearNotified) return 'Microsoft.KeyVault.KeyNearExpiry';
  return undefined;
}

export interface SchedulerDeps {
  repo: VaultRepo;
  events: EventBus;
  /** Purges a soft-deleted key whose date has come (even under purge protection). */
  purge: (vault: Vault, name: string) => void;
  /** Adds a new version of a key, as a manual rotation does. */
  rotate: (vault: Vault, name: string) => Promise<unknown>;
}

/** One pass at time `t`: purges, then expiry events, then rotations. */
export async function schedulerPass({ repo, events, purge, rotate }: SchedulerDeps, vaultOf: (id: string) => Vault | undefined, t: number): Promise<void> {
  for (const k of repo.keysDueForPurge(t)) {
    const vault = vaultOf(k.vaultId);
    if (vault) purge(vault, k.name);
  }
  for (const w of repo.expiryWatch()) {
    const vault = vaultOf(w.vault_id);
    const k = repo.key(w.vault_id, w.name);
    if (!vault || vault.deletedAt != null || !k) continue;
    const notify = (k.rotationPolicy ?? DEFAULT_ROTATION_POLICY).lifetimeActions.find((a) => a.action.type === 'Notify' && a.trigger.timeBeforeExpiry);
    const window = notify ? parseDurationSeconds(notify.trigger.timeBeforeExpiry!) ?? 30 * DAY : 30 * DAY;
    const due = expiryEventDue({ exp: w.exp, nearNotified: !!w.near_expiry_notified, expiredNotified: !!w.expired_notified }, window, t);
    if (!due) continue;
    // Marked before it is sent: an event is at most once per version, even if sending it throws.
    repo.markNotified(w.vault_id, w.name, w.version, true, due === 'Microsoft.KeyVault.KeyExpired');
    events.emit(vault, due, { objectType: 'Key', objectName: w.name, version: w.version, exp: w.exp });
  }
  for (const k of repo.keysWithRotationPolicy()) {
    const vault = vaultOf(k.vaultId);
    const latest = repo.latestVersion(k.vaultId, k.name);
    if (!vault || vault.deletedAt != null || !latest) continue;
    const due = k.rotationPolicy!.lifetimeActions.some((a) => {
      if (a.action.type !== 'Rotate') return false;
      if (a.trigger.timeAfterCreate) return t >= latest.created + parseDurationSeconds(a.trigger.timeAfterCreate)!;
      return latest.exp != null && t >= latest.exp - parseDurationSeconds(a.trigger.timeBeforeExpiry!)!;
    });
    if (due) await rotate(vault, k.name);
  }
}
