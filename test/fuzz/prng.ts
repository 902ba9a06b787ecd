/** A small seeded PRNG (sfc32) so that a fuzz run is reproducible from its seed alone. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(readonly seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.next();
  }

  /** A float in [0, 1). */
  next(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (!items.length) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)];
  }

  /** A random (version 4 shaped) UUID from this generator. */
  uuid(): string {
    const h = Array.from({ length: 32 }, () => this.int(0, 15).toString(16)).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20)}`;
  }

  /** A lowercase alphanumeric name of `len` characters, starting with a letter. */
  name(len = 8): string {
    const letters = 'abcdefghijklmnopqrstuvwxyz';
    const chars = letters + '0123456789';
    let s = this.pick([...letters]);
    for (let i = 1; i < len; i++) s += this.pick([...chars]);
    return s;
  }
}

/** The run's seed: `PGBYOK_FUZZ_SEED` when set (decimal or 0x hex), otherwise a fresh random one. */
export function fuzzSeed(env = process.env): number {
  const v = env.PGBYOK_FUZZ_SEED;
  if (v === undefined || v === '') return Math.floor(Math.random() * 2 ** 32) >>> 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw new Error(`PGBYOK_FUZZ_SEED must be an integer from 0 to 2^32-1, not '${v}'`);
  return n;
}
