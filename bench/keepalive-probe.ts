/**
 * `node dist/bench/keepalive-probe.js [N]`: what N sequential key probes (wrap + unwrap of a random 32-byte
 * value in the vault, as the key monitor does per server) cost with the key client's kept-alive
 * connections and with a new TLS connection per request. Starts a platform in process in a temporary
 * home (no root needed) and removes it afterwards. A measurement to read, not a test.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startPlatform } from '../src/platform.js';
import { loadConfig } from '../src/lib/config.js';
import { createDirectory } from '../src/keyaccess/directory.js';
import { createKeyAccess } from '../src/keyaccess/key-access.js';

const n = Number(process.argv[2] ?? 200);
const rounds = 3;
const home = mkdtempSync(join(tmpdir(), 'pgbyok-keepalive-'));
const platform = await startPlatform({ home, config: loadConfig({ PGBYOK_LOG_LEVEL: 'silent' }), logger: pino({ level: 'silent' }) });
try {
  const p = platform.paths;
  const trusted = {
    platformOrigin: platform.origin,
    vaultResource: platform.names.vaultResource,
    hsmResource: platform.names.hsmResource,
    ca: readFileSync(p.caCert, 'utf8'),
    trustedCert: readFileSync(p.trustedServiceCert, 'utf8'),
    trustedKey: readFileSync(p.trustedServiceKey, 'utf8'),
    platformCredential: () => JSON.parse(readFileSync(join(p.root, 'secrets', 'platform.json'), 'utf8')),
  };
  const directory = createDirectory(trusted);
  const keyUri = await directory.platformKey('eastus');
  directory.close();

  const run = async (keepAlive: boolean) => {
    const keys = createKeyAccess({ ...trusted, ...(keepAlive ? {} : { keepAlive: false as const }) });
    try {
      await keys.probe(keyUri, { kind: 'platform' }); // the token, and for keep-alive the first connection
      const started = process.hrtime.bigint();
      for (let i = 0; i < n; i++) await keys.probe(keyUri, { kind: 'platform' });
      return Number(process.hrtime.bigint() - started) / 1e6;
    } finally {
      keys.close();
    }
  };
  const results: Record<'keepAlive' | 'newConnection', number[]> = { keepAlive: [], newConnection: [] };
  for (let r = 0; r < rounds; r++) {
    results.newConnection.push(await run(false));
    results.keepAlive.push(await run(true));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [mode, ms] of Object.entries(results)) {
    const m = median(ms);
    console.log(`${mode.padEnd(14)} ${n} probes: median ${m.toFixed(0)} ms of ${rounds} rounds (${(m / n).toFixed(2)} ms a probe; rounds ${ms.map((x) => x.toFixed(0)).join(', ')} ms)`);
  }
  console.log(`keep-alive saves ${((1 - median(results.keepAlive) / median(results.newConnection)) * 100).toFixed(0)}% of the time`);
} finally {
  await platform.close();
  rmSync(home, { recursive: true, force: true });
}
