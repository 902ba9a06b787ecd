/** Shared pieces of the benchmark: machine facts, statistics, interleaving, and SVG charts. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
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
