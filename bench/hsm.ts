/**
 * The Managed HSM's RSA-2048 unwrap throughput, beside the vault's (same run, same load) and beside the figure
 * Azure publishes for Managed HSM (1,100 RSA-2048 unwraps/s per instance, one partition, one key: "Azure
 * Managed HSM Scaling Guidance"; see docs/research/managed-hsm-wire.md section 7). The HSM is made as a
 * customer would: ARM PUT, activation by downloading its security domain for three certificates (quorum 2),
 * Managed HSM Crypto User for the caller, an RSA-HSM 2048 key; then the same unwrap load as the vault's over
 * HTTPS (bench/lib.ts measureUnwraps), with RSA-OAEP (SHA-1), the only OAEP SoftHSM2 has.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Pgbyok } from '../test/harness.js';
import { httpsJson, log, measureUnwraps, round } from './lib.js';

const SOFTHSM = '/usr/lib/softhsm/libsofthsm2.so';
const NAME = 'bench-hsm';
const CRYPTO_USER = '21dbd100-6940-42c2-9190-5d6cb909625b';
/** Azure Managed HSM, RSA-2048 unwrap per instance (one partition available; up to about 3 × with all three). */
export const AZURE_MANAGED_HSM_UNWRAP_PER_S = 1100;

function softhsmVersion(): string {
  const r = spawnSync('softhsm2-util', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? `SoftHSM2 ${r.stdout.trim()}` : 'SoftHSM2 (version unknown)';
}

/** Three security-domain holders' certificates, as JWKs with x5c (made with openssl, as the Azure docs do). */
function sdCertificates(cleanups: (() => void)[]) {
  const dir = mkdtempSync(join(tmpdir(), 'pgbyok-bench-sd-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return [1, 2, 3].map((i) => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, `sd${i}.key`), '-out', join(dir, `sd${i}.cer`), '-subj', `/CN=sd${i}`, '-days', '2'], { stdio: 'pipe' });
    const x = new X509Certificate(readFileSync(join(dir, `sd${i}.cer`)));
    const jwk = x.publicKey.export({ format: 'jwk' }) as { n: string; e: string };
    return { kty: 'RSA', n: jwk.n, e: jwk.e, x5c: [x.raw.toString('base64')], key_ops: ['verify', 'encrypt', 'wrapKey'], alg: 'RSA-OAEP-256' };
  });
}

function expect(r: { status: number; json: any }, status: number, what: string) {
  if (r.status !== status) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

export async function measureHsm(o: { p: Pgbyok; clients: number; seconds: number; vaultUnwrapPerS: number; quick: boolean; cleanups: (() => void)[] }) {
  const head = {
    generatedAt: new Date().toISOString(), mode: o.quick ? 'quick' : 'full', key: 'RSA-HSM 2048', alg: 'RSA-OAEP',
    azure_managed_hsm_published_unwrap_per_s: AZURE_MANAGED_HSM_UNWRAP_PER_S, vault_unwrap_per_s: o.vaultUnwrapPerS,
  };
  if (!existsSync(SOFTHSM)) {
    log(`hsm: not measured, SoftHSM2 is not installed (${SOFTHSM})`);
    return { ...head, module: null, unwrap_per_s: null, skipped: `SoftHSM2 is not installed (apt-get install softhsm2 provides ${SOFTHSM})` };
  }
  const { p } = o;
  log(`hsm: creating and activating the managed HSM ${NAME}`);
  const made = expect(await p.mgmt('PUT', `Microsoft.KeyVault/managedHSMs/${NAME}`, {
    location: 'eastus', sku: { family: 'B', name: 'Standard_B1' },
    properties: { tenantId: p.admin.tenantId, initialAdminObjectIds: [p.admin.objectId], softDeleteRetentionInDays: 7, enablePurgeProtection: false },
  }), 200, 'managed HSM create');
  const hsmUri = String(made.properties.hsmUri).replace(/\/$/, '');
  // The token's resource is the HSM's challenge resource: https://managedhsm.<domain>[:port].
  const token = await p.token(p.admin, hsmUri.replace(`//${NAME}.`, '//'));
  const data = (method: string, path: string, body?: unknown) => httpsJson(p, method, `${hsmUri}${path}?api-version=7.6`, token, body);
  expect(await data('POST', '/securitydomain/download', { certificates: sdCertificates(o.cleanups), required: 2 }), 202, 'security-domain download');
  const activation = expect(await data('GET', '/securitydomain/download/pending'), 200, 'security-domain download status');
  if (activation.status !== 'Success') throw new Error(`security-domain download: ${JSON.stringify(activation)}`);
  expect(await data('PUT', `/providers/Microsoft.Authorization/roleAssignments/${randomUUID()}`, {
    properties: { roleDefinitionId: `/Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/${CRYPTO_USER}`, principalId: p.admin.objectId },
  }), 201, 'Managed HSM Crypto User role assignment');
  expect(await data('POST', '/keys/kek/create', { kty: 'RSA-HSM', key_size: 2048 }), 200, 'RSA-HSM 2048 key create');

  log(`hsm: ${o.clients} clients unwrapping for ${o.seconds}s`);
  const figures = await measureUnwraps(p, { keyUrl: `${hsmUri}/keys/kek`, token, alg: 'RSA-OAEP', clients: o.clients, seconds: o.seconds, pid: p.child().pid! });
  log(`hsm: ${figures.unwrap_per_s} unwraps/s (RSA-HSM 2048 in ${softhsmVersion()}) | vault ${o.vaultUnwrapPerS}/s (same run) | Azure Managed HSM published ${AZURE_MANAGED_HSM_UNWRAP_PER_S}/s per instance`);
  return {
    ...head, module: softhsmVersion(), ...figures,
    ratio_vs_azure_published: round(figures.unwrap_per_s / AZURE_MANAGED_HSM_UNWRAP_PER_S, 2),
    ratio_vs_vault: round(figures.unwrap_per_s / o.vaultUnwrapPerS, 2),
  };
}

/** The report's section: the three figures side by side. */
export function hsmSection(h: any): string {
  if (!h) return '';
  const figure = h.unwrap_per_s === null ? `not measured: ${h.skipped}` : `${h.unwrap_per_s}/s, p99 ${h.p99_ms} ms (${h.errors} errors)`;
  return `<!-- hsm:start -->
## Managed HSM unwrap throughput

${h.mode} run ${h.generatedAt}${h.other_cpu_cores !== undefined ? ` (other work on the machine: ${h.other_cpu_cores} cores busy meanwhile)` : ''}. An RSA-HSM 2048 key in the
platform's PKCS#11 token (${h.module ?? 'SoftHSM2'}), \`POST /keys/kek/{version}/unwrapkey\` with ${h.alg} over HTTPS by ${h.clients} clients for ${h.seconds} s,
every request authorized by local RBAC (Managed HSM Crypto User) and audited, beside the vault's RSA-2048 software
key under the same load in the same run (RSA-OAEP-256) and the figure Azure publishes for Managed HSM (per
instance with one partition available, one key; up to about 3 × with all three). Re-run this part alone with
\`npm run bench -- --only hsm\` (about 3 minutes; \`--quick\` for 8 s per measure).

| | pgbyok Managed HSM (${h.module ?? 'SoftHSM2'}) | pgbyok vault (same run) | Azure Managed HSM, published |
|---|---|---|---|
| RSA-2048 unwraps/s | ${figure} | ${h.vault_unwrap_per_s}/s | ${h.azure_managed_hsm_published_unwrap_per_s}/s |
<!-- hsm:end -->
`;
}
