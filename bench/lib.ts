/** Shared pieces of the benchmark: machine facts, statistics, interleaving, HTTPS load, and SVG charts. */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { cpus, release } from 'node:os';

export function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.+)/.exec(cpuinfo)?.[1]?.trim() ?? 'unknown';
  const flags = (/flags\s*:\s*(.+)/.exec(cpuinfo)?.[1] ?? '').split(' ');
  const interesting = ['aes', 'vaes', 'avx', 'avx2', 'avx512f', 'pclmulqdq', 'sha_ni'].filter((f) => flags.includes(f));
  const crypto = readFileSync('/proc/crypto', 'utf8').split('\n\n');
  const xts = crypto.filter((b) => /^name\s*:\s*xts\(aes\)$/m.test(b)).map((b) => ({
    driver: /driver\s*:\s*(.+)/.exec(b)?.[1]?.trim(),
    priority: Number(/priority\s*:\s*(\d+)/.exec(b)?.[1] ?? 0),
  })).sort((a, b) => b.priority - a.priority);
  let pg = 'unknown';
  try {
    pg = execFileSync('/usr/lib/postgresql/15/bin/postgres', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    // reported as unknown
  }
  return {
    cpuModel: model,
    cpuFlags: interesting,
    cores: cpus().length,
    kernel: release(),
    xtsAesDriver: xts[0]?.driver ?? 'none',
    xtsAesAccelerated: !!xts[0]?.driver && !/generic|fixed-time|ecb\(aes-generic\)/.test(xts[0].driver),
    postgres: pg,
    node: process.version,
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Runs every variant once per round, in the same order each round (A B C A B C ...), so drift hits all. */
export async function interleaved<K extends string>(rounds: number, variants: K[], run: (v: K, round: number) => Promise<number>): Promise<Record<K, number[]>> {
  const out = Object.fromEntries(variants.map((v) => [v, [] as number[]])) as Record<K, number[]>;
  for (let r = 0; r < rounds; r++) {
    for (const v of variants) out[v].push(await run(v, r));
  }
  return out;
}

export function httpsJson(p: { ca: string }, method: string, url: string, token: string, body?: unknown, agent?: Agent): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(url, { method, agent, ca: p.ca, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(data ? { 'content-length': String(data.length) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

/** User + system CPU seconds a process has used so far (from /proc, in clock ticks of 1/100 s). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds the whole machine has spent busy so far (every core; idle and I/O wait excluded), from /proc/stat. */
function machineBusySeconds(): number {
  const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + steal) / 100;
}

export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? round(Number(m[1]) / 1024, 1) : NaN;
}

/**
 * Unwrap throughput of one key over HTTPS, as a client sees it: a random 32-byte DEK is wrapped once with
 * `alg` (and its unwrap checked), then `clients` concurrent clients on kept-alive connections unwrap it for
 * `seconds`, with the same token. `keyUrl` is the key without a version (`.../keys/NAME`); the unwraps go to
 * the version the wrap names. Also the platform's memory and CPU (process `pid`) and the load generator's CPU.
 */
export async function measureUnwraps(p: { ca: string }, o: { keyUrl: string; token: string; alg: string; clients: number; seconds: number; pid: number }) {
  const rssIdle = rssMb(o.pid);
  const dek = randomBytes(32);
  const wrapped = await httpsJson(p, 'POST', `${o.keyUrl}//wrapkey?api-version=7.6`, o.token, { alg: o.alg, value: dek.toString('base64url') });
  if (wrapped.status !== 200) throw new Error(`wrapkey with ${o.keyUrl}: ${wrapped.status} ${JSON.stringify(wrapped.json)}`);
  const url = `${wrapped.json.kid}/unwrapkey?api-version=7.6`;
  const body = { alg: o.alg, value: wrapped.json.value };
  const first = await httpsJson(p, 'POST', url, o.token, body);
  if (first.status !== 200 || !Buffer.from(first.json.value, 'base64url').equals(dek)) throw new Error(`unwrapkey with ${wrapped.json.kid} did not give the DEK back: ${first.status} ${JSON.stringify(first.json)}`);
  const agent = new Agent({ keepAlive: true, maxSockets: o.clients });
  const latencies: number[] = [];
  let errors = 0;
  let rssPeak = rssIdle;
  const rssTimer = setInterval(() => { rssPeak = Math.max(rssPeak, rssMb(o.pid)); }, 500);
  const busy0 = machineBusySeconds();
  const platformCpu0 = cpuSeconds(o.pid);
  const loadCpu0 = process.cpuUsage();
  const deadline = Date.now() + o.seconds * 1000;
  await Promise.all(Array.from({ length: o.clients }, async () => {
    while (Date.now() < deadline) {
      const t = process.hrtime.bigint();
      const r = await httpsJson(p, 'POST', url, o.token, body, agent);
      if (r.status === 200) latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
      else errors++;
    }
  }));
  clearInterval(rssTimer);
  const platformCores = (cpuSeconds(o.pid) - platformCpu0) / o.seconds;
  const loadUsage = process.cpuUsage(loadCpu0);
  const loadCores = (loadUsage.user + loadUsage.system) / 1e6 / o.seconds;
  const busyCores = (machineBusySeconds() - busy0) / o.seconds;
  agent.destroy();
  return {
    clients: o.clients, seconds: o.seconds, unwrap_per_s: round(latencies.length / o.seconds, 1), errors,
    p50_ms: round(percentile(latencies, 50), 1), p99_ms: round(percentile(latencies, 99), 1),
    rss_mb: rssPeak, rss_idle_mb: rssIdle,
    platform_cpu_cores: round(platformCores, 2), load_generator_cpu_cores: round(loadCores, 2),
    /** Cores the rest of the machine kept busy meanwhile (other processes; kernel work charged to no process, such as loopback softirqs): near 0 on a quiet machine. */
    other_cpu_cores: round(Math.max(0, busyCores - platformCores - loadCores), 2),
  };
}

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** A horizontal bar chart as SVG (no dependencies): one bar per label, value printed at its end. */
export function barChart(title: string, unit: string, bars: { label: string; value: number; target?: number }[]): string {
  const width = 640;
  const left = 170;
  const barH = 26;
  const gap = 10;
  const top = 40;
  const height = top + bars.length * (barH + gap) + 30;
  const max = Math.max(...bars.map((b) => Math.max(b.value, b.target ?? 0)), 1e-9) * 1.15;
  const x = (v: number) => left + ((width - left - 20) * v) / max;
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const rows = bars.map((b, i) => {
    const y = top + i * (barH + gap);
    const target = b.target !== undefined ? `<line x1="${x(b.target)}" x2="${x(b.target)}" y1="${y - 3}" y2="${y + barH + 3}" stroke="#c0392b" stroke-width="2" stroke-dasharray="4 3"/>` : '';
    return `<text x="${left - 8}" y="${y + barH * 0.68}" text-anchor="end" font-size="13">${esc(b.label)}</text>
<rect x="${left}" y="${y}" width="${Math.max(1, x(b.value) - left)}" height="${barH}" fill="#2e86c1"/>
<text x="${x(b.value) + 5}" y="${y + barH * 0.68}" font-size="12">${esc(String(round(b.value)))} ${esc(unit)}</text>${target}`;
  }).join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<text x="10" y="24" font-size="15" font-weight="bold">${esc(title)}</text>
${rows}
<text x="${left}" y="${height - 8}" font-size="11" fill="#666">dashed red line: target</text>
</svg>
`;
}
