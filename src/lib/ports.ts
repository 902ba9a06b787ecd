import { createServer as createNetServer } from 'node:net';

/** A free loopback port (asked of the kernel), skipping those in `used`: the platform's, the vaults', the servers'. */
export async function freePort(used: Set<number> = new Set()): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createNetServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    if (!used.has(port)) return port;
  }
}

/** Where a port `up` will listen on comes from; `free` means one the kernel picks at that start. */
export type PortSource = '--port' | 'settings.json' | 'PGBYOK_PORT' | 'PGBYOK_VAULT_PORT' | 'root default' | 'free';

/**
 * The platform port and the vault port a start would use: `--port`, else the one kept in settings.json,
 * else the setting, else (vault port only) 443 as root, else a free port chosen at that start.
 */
export function plannedPorts(o: {
  flag?: number; settings?: { port: number; vaultPort?: number }; config: { PGBYOK_PORT?: number; PGBYOK_VAULT_PORT?: number }; root: boolean;
}): { port?: number; portFrom: PortSource; vaultPort?: number; vaultPortFrom: PortSource } {
  const [port, portFrom]: [number | undefined, PortSource] = o.flag !== undefined ? [o.flag, '--port']
    : o.settings ? [o.settings.port, 'settings.json'] : o.config.PGBYOK_PORT !== undefined ? [o.config.PGBYOK_PORT, 'PGBYOK_PORT'] : [undefined, 'free'];
  const [vaultPort, vaultPortFrom]: [number | undefined, PortSource] = o.settings?.vaultPort !== undefined ? [o.settings.vaultPort, 'settings.json']
    : o.config.PGBYOK_VAULT_PORT !== undefined ? [o.config.PGBYOK_VAULT_PORT, 'PGBYOK_VAULT_PORT'] : o.root ? [443, 'root default'] : [undefined, 'free'];
  return { port, portFrom, vaultPort, vaultPortFrom };
}
