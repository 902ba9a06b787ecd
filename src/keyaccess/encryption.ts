import type { Directory } from './directory.js';
import type { KeyPrincipal } from './key-access.js';

/** How a server's (or a backup's) key is protected: by the platform's key, or by the customer's key in their vault. */
export interface DataEncryption {
  type: 'SystemManaged' | 'AzureKeyVault';
  /** The customer's key (versionless follows rotation; versioned stays pinned). */
  primaryKeyURI?: string;
  /** Resource id of the user-assigned identity that reaches the key. */
  primaryUserAssignedIdentityId?: string;
}

/** A wrapped key and the versioned key id that wrapped it. */
export interface WrappedDek {
  encryption: DataEncryption;
  wrappedDek: string;
  wrappedBy: string;
}

/** Geo-redundant backup: copies of the backups in the paired region, under the geo key. */
export interface GeoBackup {
  region: string;
  encryption: DataEncryption;
  keyStatus: 'Valid' | 'Invalid';
}

/** Who reaches the key: the platform for a service-managed key, the server's identity for a customer's. */
export const principalOf = (enc: DataEncryption): KeyPrincipal =>
  enc.type === 'SystemManaged' ? { kind: 'platform' } : { kind: 'identity', resourceId: enc.primaryUserAssignedIdentityId! };

/** Finds the key that protects an encryption: the customer's key URI, or the region's service-managed key. */
export function createKeyLocator(directory: Pick<Directory, 'platformKey'>) {
  // One look-up per region at a time: two first creates at once must not both make the platform's vault.
  const platformKeys = new Map<string, Promise<string>>();
  return {
    principalOf,
    keyUriOf(enc: DataEncryption, region: string): Promise<string> {
      if (enc.type === 'AzureKeyVault') return Promise.resolve(enc.primaryKeyURI!);
      let uri = platformKeys.get(region);
      if (!uri) {
        uri = directory.platformKey(region);
        platformKeys.set(region, uri);
        uri.catch(() => platformKeys.delete(region));
      }
      return uri;
    },
  };
}

export type KeyLocator = ReturnType<typeof createKeyLocator>;
