/**
 * Key-loss detection time versus the number of servers. One platform of its own (key monitor every
 * `intervalMs`), N customer-key servers, each with its own key in one vault (so disabling a key affects
 * exactly one server). A trial disables one server's key and times the moment the management API reads
 * that server as Inaccessible, then re-enables it and waits for Ready with no operation open.
 *
 * Two paths: with the vault's events (the default: the vault pushes KeyDisabled to the platform, which
 * checks that server at once) and by polling alone. The platform has no setting that turns events off; the
 * subscription lives in the customer's vault, so the polling-only figure deletes the servers'
 * subscriptions there (as the vault's owner can; the monitor is then the only thing that notices) and puts
 * them back afterwards.
 */
import { readFileSync } from 'node:fs';
import { startPgbyok, type Pgbyok } from '../test/harness.js';
import { log, median, percentile, round } from './lib.js';

const FS = 'Microsoft.DBforPostgreSQL/flexibleServers';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const VAULT = 'bench-mon-kv';
/** What one idle server costs (PostgreSQL with 128 MB shared buffers, mostly untouched), with margin. */
const MB_PER_SERVER = 250;

type Stat = { median: number; p95: number; runs: number[] };
const stat = (xs: number[]): Stat => ({ median: round(median(xs), 0), p95: round(percentile(xs, 95), 0), runs: xs.map((x) => round(x, 0)) });

export function availableMb(): number {
  return Number(/MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1024;
}

export async function measureMonitor(opts: { quick: boolean; cleanups: (() => void | Promise<void>)[]; machine: unknown }) {
  const intervalMs = 2000;
  const trials = opts.quick ? 8 : 15;
  const avail = availableMb();
  const wanted = opts.quick ? [1, 8] : [1, 8, 16];
  const counts = wanted.filter((n) => n * MB_PER_SERVER + 2048 <= avail);
  const skipped = wanted.filter((n) => !counts.includes(n));
  log(`monitor: ${counts.join(', ')} servers, ${trials} trials per path, key monitor every ${intervalMs} ms (${Math.round(avail)} MB available${skipped.length ? `; skipped ${skipped.join(', ')}: not enough memory` : ''})`);

  const p: Pgbyok = await startPgbyok({ PGBYOK_LOG_LEVEL: 'warn', PGBYOK_KEY_MONITOR_INTERVAL_MS: String(intervalMs) });
  const created: string[] = [];
  opts.cleanups.push(async () => {
    for (const name of created.reverse()) p.cliRaw(['server', 'delete', '--name', name, '--yes']);
    await p.stop(); // also unmounts, detaches loop devices and kills PostgreSQL processes left under its home
  });

  const vaultToken = async () => p.token(p.admin);
  const id = p.cli('identity', 'create', '--name', 'bench-mon-id');
  const v = p.cli('vault', 'create', '--name', VAULT, '--location', 'eastus', '--retention-days', '90', '--enable-purge-protection');
  p.cli('vault', 'set-policy', '--name', VAULT, '--object-id', id.principalId, '--key-permissions', 'get', 'list', 'wrapKey', 'unwrapKey');
  const vaultUri = v.properties.vaultUri as string;
  const nameOf = (i: number) => `bench-mon-${i}`;
  const keyOf = (i: number) => `kek-${i}`;

  const show = async (name: string) => (await p.mgmt('GET', `${FS}/${name}`)).json?.properties?.state as string | undefined;
  const openOps = async (name: string) => ((await p.mgmt('GET', 'Microsoft.DBforPostgreSQL/operations?top=200')).json?.value ?? [])
    .filter((o: any) => o.resource === name && !o.endTime).length;
  const waitState = async (name: string, state: string, limitMs: number) => {
    const t = Date.now();
    while ((await show(name).catch(() => undefined)) !== state) {
      if (Date.now() - t > limitMs) throw new Error(`${name} not ${state} after ${limitMs} ms`);
      await sleep(20);
    }
    return Date.now();
  };
  /** Ready and nothing running on it (an open operation makes the monitor skip the server). */
  const settle = async (name: string) => {
    await waitState(name, 'Ready', 120_000);
    for (let i = 0; i < 600 && (await openOps(name)) > 0; i++) await sleep(100);
  };
  const setEnabled = async (i: number, enabled: boolean, token: string) => {
    const r = await p.http('PATCH', `${vaultUri}keys/${keyOf(i)}/?api-version=7.6`, { token, body: { attributes: { enabled } } });
    if (r.status !== 200) throw new Error(`key ${keyOf(i)} enabled=${enabled}: ${r.status} ${r.text}`);
  };

  // The platform's subscriptions in the vault, kept to put back (name and endpoint, as listed).
  const subsPath = `Microsoft.KeyVault/vaults/${VAULT}/eventSubscriptions`;
  type Sub = { name: string; properties: { destination: { properties: { endpointUrl: string } }; filter?: { includedEventTypes?: string[] | null } } };
  const listSubs = async () => ((await p.mgmt('GET', subsPath)).json?.value ?? []) as Sub[];
  const saved = new Map<string, Sub>();
  const removeSubs = async () => {
    for (const s of await listSubs()) {
      saved.set(s.name, s);
      const r = await p.mgmt('DELETE', `${subsPath}/${s.name}`);
      if (r.status !== 200 && r.status !== 204) throw new Error(`deleting subscription ${s.name}: ${r.status} ${r.text}`);
    }
    if ((await listSubs()).length) throw new Error('event subscriptions still present');
  };
  const restoreSubs = async () => {
    const present = new Set((await listSubs()).map((s) => s.name));
    for (const [name, s] of saved) {
      if (present.has(name)) continue;
      const r = await p.mgmt('PUT', `${subsPath}/${name}`, { properties: { destination: { endpointType: 'WebHook', properties: s.properties.destination.properties }, filter: s.properties.filter ?? {} } });
      if (r.status !== 200 && r.status !== 201) throw new Error(`restoring subscription ${name}: ${r.status} ${r.text}`);
    }
  };

  const ensureServers = async (n: number) => {
    for (let i = created.length; i < n; i++) {
      const k = p.cli('key', 'create', '--vault-name', VAULT, '--name', keyOf(i));
      const keyUri = (k.key.kid as string).replace(/\/[0-9a-f]{32}$/, '');
      created.push(nameOf(i));
      p.cli('server', 'create', '--name', nameOf(i), '--location', 'eastus', '--admin-user', 'dbadmin', '--admin-password', 'Bench-Passw0rd!',
        '--key', keyUri, '--identity', id.name, '--storage-size', '1');
    }
    for (let i = 0; i < n; i++) await settle(nameOf(i));
  };

  const trial = async (i: number) => {
    await settle(nameOf(i));
    // Ready again comes from a monitor pass (polling) or just after one: without a random pause every trial
    // would start at the same phase of the monitor's cycle (right after a pass, the worst case).
    await sleep(Math.random() * intervalMs);
    const token = await vaultToken(); // before the clock starts: only the disabling call itself is timed
    const t0 = Date.now();
    await setEnabled(i, false, token);
    const detected = await waitState(nameOf(i), 'Inaccessible', 120_000) - t0;
    // The lockout goes on (PostgreSQL stopping, key out of the kernel) after the state reads Inaccessible.
    for (let j = 0; j < 600 && (await openOps(nameOf(i))) > 0; j++) await sleep(100);
    const t1 = Date.now();
    await setEnabled(i, true, token);
    const back = await waitState(nameOf(i), 'Ready', 120_000) - t1;
    return { detected, back };
  };

  const detect: Record<string, { events: Stat; polling: Stat }> = {};
  const restore: Record<string, { events: Stat; polling: Stat }> = {};
  for (const n of counts) {
    log(`monitor: ${n} server(s)`);
    await ensureServers(n);
    const byPath = { events: { d: [] as number[], b: [] as number[] }, polling: { d: [] as number[], b: [] as number[] } };
    for (const path of ['events', 'polling'] as const) {
      if (path === 'events') await restoreSubs();
      else await removeSubs();
      if (path === 'events' && (await listSubs()).length < n) throw new Error(`only ${(await listSubs()).length} event subscriptions for ${n} servers`);
      for (let t = 0; t < trials; t++) {
        // A different server each trial, spread over all N (the last created ones first).
        const r = await trial((((n - 1 - t) % n) + n) % n);
        byPath[path].d.push(r.detected);
        byPath[path].b.push(r.back);
      }
    }
    await restoreSubs();
    detect[String(n)] = { events: stat(byPath.events.d), polling: stat(byPath.polling.d) };
    restore[String(n)] = { events: stat(byPath.events.b), polling: stat(byPath.polling.b) };
    log(`monitor: ${n} server(s): detection events median ${detect[String(n)].events.median} ms p95 ${detect[String(n)].events.p95} ms; polling median ${detect[String(n)].polling.median} ms p95 ${detect[String(n)].polling.p95} ms`);
  }
  return {
    generatedAt: new Date().toISOString(), mode: opts.quick ? 'quick' : 'full', machine: opts.machine,
    interval_ms: intervalMs, concurrency: 16, trials_per_path: trials, servers: counts, skipped_for_memory: skipped,
    memory_available_mb: Math.round(avail), detect_ms: detect, restore_ms: restore,
  };
}

/** The BENCHMARKS.md section (between markers, so a monitor-only run can replace it in place). */
export function monitorSection(m: any): string {
  if (!m) return '';
  const mc = m.machine;
  const rows = m.servers.map((n: number) => {
    const d = m.detect_ms[String(n)];
    const b = m.restore_ms[String(n)];
    return `| ${n} | ${d.events.median} | ${d.events.p95} | ${d.polling.median} | ${d.polling.p95} | ${b.events.median} / ${b.polling.median} |`;
  }).join('\n');
  const [lo, hi] = [m.servers[0], m.servers[m.servers.length - 1]].map((n: number) => m.detect_ms[String(n)]);
  const trend = m.servers.length < 2 ? '' : `\nFrom ${m.servers[0]} to ${m.servers[m.servers.length - 1]} servers the median detection time went from ${lo.events.median} to ${hi.events.median} ms with events and from ${lo.polling.median} to ${hi.polling.median} ms by polling alone (polling figures are spread over the whole interval by design, so medians of ${m.trials_per_path} trials move by several hundred ms from run to run). "Back to Ready" is re-enabling the key to \`Ready\` (with events the KeyEnabled event triggers the check; by polling it waits for the next pass; these trials re-enable right after the lockout, at a fixed phase of the cycle, so that figure is not phase-randomised).\n`;
  return `<!-- monitor:start -->
## Key-loss detection time versus the number of servers

${m.mode} run ${m.generatedAt}; machine ${mc.cpuModel}, ${mc.cores} cores, xts(aes) driver ${mc.xtsAesDriver}; ${m.memory_available_mb} MB memory available.
One platform, N customer-key servers (1 GiB storage each), each with its own key in one vault; the key
monitor checks every server every ${m.interval_ms} ms (${m.concurrency} at once). A trial disables one server's key and
times until the management API reads that server as \`Inaccessible\` (polled every 20 ms), then re-enables the
key and waits for \`Ready\`; ${m.trials_per_path} trials per path and N, a different server each time, each after a random
pause of up to one interval (so the trials sample every phase of the monitor's cycle). **With events**:
the vault's KeyDisabled event makes the platform check that server at once (the default; the platform
debounces events by 100 ms). **Polling only**: pgbyok has no setting that turns events off, so the servers' event subscriptions were deleted from the vault
(as its owner can) and the monitor alone noticed; its expected figure is about half the interval plus one
check. The machine has 2 cores and other test suites were running during the measurement, so the figures
are noisy; with ${m.trials_per_path} trials the p95 is close to the maximum. Re-run this part alone with
\`npm run bench -- --quick --only monitor\` (1 and 8 servers, about 3 minutes) or without \`--quick\` (1, 8 and 16).${m.skipped_for_memory.length ? ` Not measured for lack of memory: ${m.skipped_for_memory.join(', ')} servers.` : ''}

| servers | events median (ms) | events p95 (ms) | polling median (ms) | polling p95 (ms) | back to Ready, median (ms, events / polling) |
|---|---|---|---|---|---|
${rows}
${trend}
<!-- monitor:end -->
`;
}
