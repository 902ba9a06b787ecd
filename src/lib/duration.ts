/**
 * ISO 8601 durations as Key Vault rotation policies use them (`P90D`, `P1Y2M`, `PT12H`). Years count as
 * 365 days and months as 30, the same approximation Azure documents for rotation policies.
 */
const RE = /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;

export function parseDurationSeconds(text: string): number | undefined {
  const m = RE.exec(text);
  if (!m || text === 'P' || text.endsWith('T')) return undefined;
  const [y, mo, w, d, h, mi, s] = m.slice(1).map((x) => (x ? Number(x) : 0));
  const total = ((((y * 365 + mo * 30 + w * 7 + d) * 24 + h) * 60 + mi) * 60) + s;
  return total > 0 ? total : undefined;
}
