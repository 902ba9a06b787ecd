/** Prints results as `az` does: JSON by default, or a table of the scalar fields. */
export type OutputFormat = 'json' | 'table' | 'none';

function flatten(obj: Record<string, unknown>, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v === null || v === undefined) continue;
    if (Array.isArray(v)) {
      if (v.every((x) => typeof x !== 'object')) out[key] = v.join(',');
    } else if (typeof v === 'object') {
      if (prefix.split('.').length < 2) flatten(v as Record<string, unknown>, key, out);
    } else {
      out[key] = String(v);
    }
  }
  return out;
}

function table(rows: Record<string, unknown>[], columns?: string[]): string {
  const flat = rows.map((r) => flatten(r));
  const cols = columns ?? [...new Set(flat.flatMap((r) => Object.keys(r)))].filter((c) => !/\.(n|e)$|^n$|^e$/.test(c)).slice(0, 8);
  const widths = cols.map((c) => Math.min(60, Math.max(c.length, ...flat.map((r) => (r[c] ?? '').length))));
  const line = (cells: string[]) => cells.map((c, i) => (c.length > widths[i] ? c.slice(0, widths[i] - 1) + '…' : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(cols.map((c) => c.replace(/^.*\./, '').replace(/^./, (x) => x.toUpperCase()))), line(widths.map((w) => '-'.repeat(w))), ...flat.map((r) => line(cols.map((c) => r[c] ?? '')))].join('\n');
}

export function print(result: unknown, format: OutputFormat, columns?: string[]): void {
  if (result === undefined || format === 'none') return;
  if (format === 'table' && typeof result === 'object' && result !== null) {
    const rows = Array.isArray(result) ? result : [result];
    process.stdout.write(table(rows as Record<string, unknown>[], columns) + '\n');
    return;
  }
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
}
