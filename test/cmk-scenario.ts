/**
 * A server under a customer-managed key, set up as a customer would (vault, identity, access policy, key,
 * server), for the tests of key material in memory and of the locked server's front door.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createIdentity, vaultName, type Cred, type Pgbyok } from './harness.js';

export const PASSWORD = 'Passw0rd!x';
export const REGION = 'eastus';

export interface CmkServer {
  name: string;
  port: number;
  vault: string;
  keyName: string;
  keyUri: string;
  identity: Cred & { objectId: string; id: string };
  identityName: string;
}

export function createCmkServer(p: Pgbyok, tag: string): CmkServer {
  const vault = p.cli('vault', 'create', '--name', vaultName(tag), '--location', REGION, '--retention-days', '90', '--enable-purge-protection').name;
  const identityName = `id-${tag}`;
  const identity = createIdentity(p, identityName);
  p.cli('vault', 'set-policy', '--name', vault, '--object-id', identity.objectId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
  const keyName = `kek-${tag}`;
  const keyUri = String(p.cli('key', 'create', '--vault-name', vault, '--name', keyName).key.kid).replace(/\/[^/]+$/, '');
  const name = `srv-${tag}`;
  const s = p.cli('server', 'create', '--name', name, '--location', REGION, '--admin-user', 'dbadmin', '--admin-password', PASSWORD, '--key', keyUri, '--identity', identityName);
  if (s.properties.state !== 'Ready') throw new Error(`server ${name} is ${s.properties.state}`);
  return { name, port: s.properties.port, vault, keyName, keyUri, identity, identityName };
}

/** The volume header of a server (plaintext, next to the encrypted directory). */
export function volumeHeaderPath(p: Pgbyok, name: string): string {
  return join(p.home, 'regions', REGION, 'mnt', name, 'volume.json');
}

/**
 * The server's DEK, learnt as its identity could learn it: the wrapped DEK from the volume header, unwrapped
 * by the vault with the identity's own token.
 */
export async function unwrapDek(p: Pgbyok, s: CmkServer): Promise<Buffer> {
  const header = JSON.parse(readFileSync(volumeHeaderPath(p, s.name), 'utf8'));
  const res = await p.http('POST', `${header.meta.wrappedBy}/unwrapkey?api-version=7.6`, {
    token: await p.token(s.identity), body: { alg: 'RSA-OAEP-256', value: header.meta.wrappedDek },
  });
  if (res.status !== 200) throw new Error(`unwrap of the DEK failed: ${res.status} ${res.text}`);
  return Buffer.from(res.json.value, 'base64url');
}

export function connInfo(p: Pgbyok, port: number, sslmode = 'verify-full'): string {
  return `host=localhost port=${port} dbname=postgres user=dbadmin sslmode=${sslmode} sslrootcert=${join(p.home, 'tls', 'ca.pem')}`;
}
