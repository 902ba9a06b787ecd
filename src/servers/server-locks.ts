/**
 * One queue per server inside this process: an operation's steps, a key check and a backup pass on the
 * same server never interleave. (Across hosts, the operation lease in the database does that job.)
 */
export function createServerLocks() {
  const locks = new Map<string, Promise<unknown>>();
  return {
    /** Runs `fn` after everything queued earlier on the same server. */
    run<T>(name: string, fn: () => Promise<T>): Promise<T> {
      const prev = locks.get(name) ?? Promise.resolve();
      const next = prev.catch(() => undefined).then(fn);
      locks.set(name, next);
      void next.finally(() => { if (locks.get(name) === next) locks.delete(name); }).catch(() => undefined);
      return next;
    },
    /** Resolves when everything queued so far, on every server, has run. */
    async idle(): Promise<void> {
      while (locks.size) await Promise.allSettled([...locks.values()]);
    },
  };
}

export type ServerLocks = ReturnType<typeof createServerLocks>;
