/** Placeholder replaced below. */
export async function runApply(_o: unknown): Promise<number> {
  return 1;
}
