/**
 * Runs an async function over a list with at most `limit` calls in flight,
 * keeping the results in the list's order. For many short file operations
 * (Node's file calls go through a small thread pool: one at a time leaves it
 * idle). The first rejection is thrown after the calls in flight settle.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  const bad = settled.find((s) => s.status === 'rejected');
  if (bad) throw bad.reason;
  return out;
}
