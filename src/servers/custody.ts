import type { Clock } from '../lib/clock.js';
import { KeyAccessError, parseKeyUri, type KeyAccess, type KeyPrincipal } from '../keyaccess/key-access.js';
import type { KeyLocator } from '../keyaccess/encryption.js';
import { keyIdentifier } from '../storage/fscrypt.js';
import { newDek, VolumeError, type Volume } from '../storage/volume.js';
import type { DataEncryption, Server, WrappedDek } from './model/server.js';
import type { ServerRuntime } from './runtime.js';
import type { ServersRepo } from './servers.repo.js';

/**
 * Key custody: the DEK is unwrapped only to be handed to the kernel, wrapped anew only by the vault. A
 * re-wrap is two recorded steps (the pending wrap, then the swap), so both wraps open the same DEK while
 * it is in flight; the volume header mirrors the wrap so a volume says by itself which key opens it.
 */
export interface CustodyDeps {
  repo: ServersRepo;
  runtime: ServerRuntime;
  keys: KeyAccess;
  locator: KeyLocator;
  clock: Clock;
}

/** Whether a key URI (versioned or not) names the key that made a versioned kid. */
export function sameKey(keyUri: string, kid: string): boolean {
  const a = parseKeyUri(keyUri);
  const b = parseKeyUri(kid);
  return a.origin === b.origin && a.name === b.name && (!a.version || a.version === b.version);
}

export const sameEncryption = (a: DataEncryption | undefined, b: DataEncryption | undefined) =>
  !!a && !!b && a.type === b.type && a.primaryKeyURI === b.primaryKeyURI && a.primaryUserAssignedIdentityId === b.primaryUserAssignedIdentityId;

export function createCustody(d: CustodyDeps) {
  const { principalOf } = d.locator;

  /** The volume header mirrors the wrapped DEK. */
  const writeHeaderMeta = (s: Server, volume: Volume = d.runtime.volumeOf(s)) => {
    volume.updateHeader((h) => ({
      ...h,
      meta: {
        server: s.name,
        dataEncryption: s.current.encryption,
        wrappedDek: s.current.wrappedDek,
        wrappedBy: s.current.wrappedBy,
        ...(s.pending ? { pending: s.pending } : {}),
      },
    }));
  };

  /**
   * Unwraps the server's DEK through the vault: the current wrap, or the pending one of a re-wrap in
   * flight. It is checked against the volume's key identifier, so a wrong key never reaches the kernel.
   * `alternate` is an encryption that may also open the current wrap (a new identity for the same key).
   */
  const openDek = async (s: Server, volume: Volume = d.runtime.volumeOf(s), alternate?: DataEncryption): Promise<Buffer> => {
    let expected: string | undefined;
    try {
      volume.attach();
      expected = volume.readHeader().keyIdentifier;
    } catch (e) {
      if (!(e instanceof VolumeError && e.code === 'NotFound')) throw e;
    }
    let last: unknown = new KeyAccessError('KeyNotFound', 'the server has no wrapped DEK');
    const attempts: [WrappedDek, KeyPrincipal][] = [];
    for (const w of [s.current, s.pending].filter(Boolean) as WrappedDek[]) {
      attempts.push([w, principalOf(w.encryption)]);
      if (alternate?.type === 'AzureKeyVault' && w.encryption.type === 'AzureKeyVault' && sameKey(alternate.primaryKeyURI!, w.wrappedBy)) {
        attempts.push([w, principalOf(alternate)]);
      }
    }
    for (const [w, principal] of attempts) {
      let dek: Buffer;
      try {
        dek = await d.keys.unwrap(w.wrappedBy, w.wrappedDek, principal);
      } catch (e) {
        last = e;
        continue;
      }
      if (expected && keyIdentifier(dek).toString('hex') !== expected) {
        dek.fill(0);
        last = new KeyAccessError('WrongKey', 'the unwrapped key does not open this server\'s volume');
        continue;
      }
      return dek;
    }
    throw last;
  };

  /** The customer's key must be usable for new protection too: enabled, active, not expired. Returns the latest kid. */
  const checkKeyAttributes = async (enc: DataEncryption): Promise<string | undefined> => {
    if (enc.type !== 'AzureKeyVault') return undefined;
    const info = await d.keys.getKey(enc.primaryKeyURI!, principalOf(enc));
    const now = d.clock.now() / 1000;
    if (!info.enabled) throw new KeyAccessError('KeyDisabled', 'the key is disabled');
    if (info.exp !== undefined && info.exp <= now) throw new KeyAccessError('KeyExpired', `the key expired at ${new Date(info.exp * 1000).toISOString()}`);
    if (info.nbf !== undefined && info.nbf > now) throw new KeyAccessError('KeyNotYetValid', 'the key is not active yet');
    return info.kid;
  };

  return {
    writeHeaderMeta,
    openDek,
    checkKeyAttributes,
    /** A fresh DEK, wrapped by the vault under the given encryption; only the wrap is kept. */
    async wrapNewDek(encryption: DataEncryption, region: string): Promise<{ kid: string; wrapped: string }> {
      const dek = newDek();
      try {
        return await d.keys.wrap(await d.locator.keyUriOf(encryption, region), dek, principalOf(encryption));
      } finally {
        dek.fill(0);
      }
    },
    /** Re-wrap, first half: the DEK wrapped under the target, recorded as pending (both wraps open it). */
    async wrapPending(s: Server, target: DataEncryption): Promise<WrappedDek> {
      const volume = d.runtime.volumeOf(s);
      const dek = await openDek(s, volume, target);
      try {
        const { kid, wrapped } = await d.keys.wrap(await d.locator.keyUriOf(target, s.location), dek, principalOf(target));
        const pending: WrappedDek = { encryption: target, wrappedDek: wrapped, wrappedBy: kid };
        d.repo.update(s.id, { pending });
        writeHeaderMeta({ ...s, pending }, volume);
        return pending;
      } finally {
        dek.fill(0);
      }
    },
    /** Re-wrap, second half: the pending wrap becomes the current one. Idempotent. */
    commitPending(s: Server): Server {
      if (!s.pending) return s;
      d.repo.update(s.id, { current: s.pending, pending: null });
      const next = { ...s, current: s.pending, pending: undefined };
      writeHeaderMeta(next);
      return next;
    },
  };
}

export type Custody = ReturnType<typeof createCustody>;
