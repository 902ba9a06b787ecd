/**
 * The DNS names pgbyok's resources answer on, under one configurable domain, as Azure names them under
 * `vault.azure.net` and `postgres.database.azure.com`. On one machine the domain is `localhost`: every name
 * under it resolves to loopback (libnss-myhostname; Chromium by itself). A real deployment sets a wildcard
 * DNS record for `*.vault.<domain>` and `*.postgres.database.<domain>`.
 */
export interface Names {
  domain: string;
  /** The one HTTPS port every vault is served on (443 leaves it out of URLs). */
  vaultPort: number;
  /** `kv1.vault.<domain>` */
  vaultHost(name: string): string;
  /** `https://kv1.vault.<domain>[:port]/` (the vault's `vaultUri`) */
  vaultUri(name: string): string;
  /** The vault's origin, without the trailing slash. */
  vaultOrigin(name: string): string;
  /** `https://vault.<domain>`: the audience of the vaults' tokens (the one to ask for). */
  vaultResource: string;
  /**
   * `https://vault.<domain>[:port]`: the `resource` of the vaults' 401 challenge, with the vault port unless it
   * is 443. The Python SDK checks that the vault's host:port ends in `.` + the resource's host:port; the JS
   * SDK compares host names only. Vaults accept tokens for it too.
   */
  vaultChallengeResource: string;
  /** The vault a Host header (or TLS server name) names, or undefined when it names none. */
  vaultNameOf(host: string | undefined): string | undefined;
  /** `hsm1.managedhsm.<domain>`: a Managed HSM, served by the same listener and port as the vaults. */
  hsmHost(name: string): string;
  /** `https://hsm1.managedhsm.<domain>[:port]/` (the HSM's `hsmUri`) */
  hsmUri(name: string): string;
  hsmOrigin(name: string): string;
  /** `https://managedhsm.<domain>`: the audience of the HSMs' tokens. */
  hsmResource: string;
  /** `https://managedhsm.<domain>[:port]`: the `resource` of an HSM's 401 challenge (the port as for vaults). */
  hsmChallengeResource: string;
  /** The HSM a Host header (or TLS server name) names, or undefined. */
  hsmNameOf(host: string | undefined): string | undefined;
  /** `pg1.postgres.database.<domain>` */
  serverFqdn(name: string): string;
  /** The names the one listener's certificate must cover. */
  certificateNames(): string[];
}

export function createNames(domain: string, vaultPort: number): Names {
  const d = domain.toLowerCase().replace(/\.$/, '');
  const portPart = vaultPort === 443 ? '' : `:${vaultPort}`;
  const vaultSuffix = `.vault.${d}`;
  const hsmSuffix = `.managedhsm.${d}`;
  const vaultHost = (name: string) => `${name.toLowerCase()}${vaultSuffix}`;
  const hsmHost = (name: string) => `${name.toLowerCase()}${hsmSuffix}`;
  /** The one DNS label before `suffix` in a Host header or server name, if that is what it is. */
  const labelOf = (host: string | undefined, suffix: string): string | undefined => {
    if (!host) return undefined;
    // Host may carry a port (and an IPv6 literal carries colons, but never names a vault).
    const h = host.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
    if (!h.endsWith(suffix)) return undefined;
    const label = h.slice(0, -suffix.length);
    return label && !label.includes('.') ? label : undefined;
  };
  return {
    domain: d,
    vaultPort,
    vaultHost,
    vaultOrigin: (name) => `https://${vaultHost(name)}${portPart}`,
    vaultUri: (name) => `https://${vaultHost(name)}${portPart}/`,
    vaultResource: `https://vault.${d}`,
    vaultChallengeResource: `https://vault.${d}${portPart}`,
    vaultNameOf: (host) => labelOf(host, vaultSuffix),
    hsmHost,
    hsmOrigin: (name) => `https://${hsmHost(name)}${portPart}`,
    hsmUri: (name) => `https://${hsmHost(name)}${portPart}/`,
    hsmResource: `https://managedhsm.${d}`,
    hsmChallengeResource: `https://managedhsm.${d}${portPart}`,
    hsmNameOf: (host) => labelOf(host, hsmSuffix),
    serverFqdn: (name) => `${name.toLowerCase()}.postgres.database.${d}`,
    certificateNames: () => [`*.vault.${d}`, `vault.${d}`, `*.managedhsm.${d}`, `managedhsm.${d}`, `*.postgres.database.${d}`],
  };
}
