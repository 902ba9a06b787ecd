import { problemWith, type FuzzRequest } from './generator.js';
import type { RawResponse } from './send.js';

/** What a run found: broken expectations, every 5xx, state changes, and counts for the summary. */
export class Findings {
  problems: { request: FuzzRequest; why: string; res?: RawResponse }[] = [];
  fiveHundreds: { request: FuzzRequest; res: RawResponse }[] = [];
  stateChanges: string[] = [];
  statuses = new Map<number, number>();
  sent = 0;

  constructor(readonly seed: number) {}

  record(q: FuzzRequest, res: RawResponse | Error): void {
    this.sent++;
    if (res instanceof Error) {
      this.problems.push({ request: q, why: `no answer: ${res.message}` });
      return;
    }
    this.statuses.set(res.status, (this.statuses.get(res.status) ?? 0) + 1);
    if (res.status >= 500) this.fiveHundreds.push({ request: q, res });
    const why = problemWith(res, q.expect);
    if (why) this.problems.push({ request: q, why, res });
  }

  /** Where the counts stand, to report only what comes after. */
  mark(): { problems: number; stateChanges: number } {
    return { problems: this.problems.length, stateChanges: this.stateChanges.length };
  }

  /** Empty if nothing went wrong since `from`; otherwise an account grouped by what went wrong and the path mutation. */
  since(from: { problems: number; stateChanges: number }, title: string): string {
    const problems = this.problems.slice(from.problems);
    const changes = this.stateChanges.slice(from.stateChanges);
    if (!problems.length && !changes.length) return '';
    const groups = new Map<string, typeof problems>();
    for (const p of problems) {
      const key = `${p.why} [path mutation: ${p.request.mutations.path}]`;
      groups.set(key, [...(groups.get(key) ?? []), p]);
    }
    const lines = [...groups].sort((a, b) => b[1].length - a[1].length).slice(0, 40).map(([k, ps]) => {
      const routes = [...new Set(ps.map((p) => p.request.routeId))];
      const examples = ps.slice(0, 2).map((p) => `      e.g. ${describeRequest(p.request)} -> ${p.res ? `${p.res.status} ${p.res.text.slice(0, 200)}` : 'no answer'}`);
      return `  ${ps.length}× ${k}\n      routes (${routes.length}): ${routes.slice(0, 12).join(', ')}${routes.length > 12 ? ', ...' : ''}\n${examples.join('\n')}`;
    });
    return [
      `${title} (seed ${this.seed}; replay with PGBYOK_FUZZ_SEED=${this.seed}): ${problems.length} problems in ${groups.size} kinds, ${changes.length} state changes`,
      ...lines,
      ...changes.slice(0, 10),
    ].join('\n');
  }

  summary(seconds: number): string[] {
    const statuses = [...this.statuses].sort(([a], [b]) => a - b).map(([s, c]) => `${s}:${c}`).join(' ');
    return [
      `security fuzz seed ${this.seed}: ${this.sent} requests in ${seconds.toFixed(1)} s; statuses ${statuses}; ${this.fiveHundreds.length} answered 5xx`,
      ...this.fiveHundreds.slice(0, 25).map((f) => `  5xx ${describeRequest(f.request)} -> ${f.res.status} ${f.res.text.slice(0, 160)}`),
    ];
  }
}

export const describeRequest = (q: FuzzRequest) => `#${q.n} ${q.raw.method} ${q.raw.path.slice(0, 160)} [${q.label}]`;
