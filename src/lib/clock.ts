/**
 * The one source of "now" for the platform's own decisions (token expiry, key expiry, grace periods,
 * schedules). Injected, never imported as a singleton, so the handler tier can move time by hand.
 */
export interface Clock {
  /** Milliseconds since the epoch, like Date.now(). */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Whole seconds since the epoch, as the database and JWTs keep them. */
export const nowSeconds = (clock: Clock): number => Math.floor(clock.now() / 1000);

/** A clock the tests move by hand (the handler tier): starts at `startMs`, moves only when told. */
export function manualClock(startMs = Date.now()) {
  let t = startMs;
  return {
    now: () => t,
    advance(ms: number) {
      t += ms;
    },
    set(ms: number) {
      t = ms;
    },
  };
}
