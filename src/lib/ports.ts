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
