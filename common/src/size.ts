/** Byte sizes: parse '8G', '512MiB', '1.5GB', '1048576'; format for people. */
const UNITS: Record<string, number> = {
  '': 1, B: 1,
  K: 1024, KIB: 1024, KB: 1000,
  M: 1024 ** 2, MIB: 1024 ** 2, MB: 1000 ** 2,
  G: 1024 ** 3, GIB: 1024 ** 3, GB: 1000 ** 3,
  T: 1024 ** 4, TIB: 1024 ** 4, TB: 1000 ** 4,
};

/** Returns the number of bytes, or null when `value` is not a size. */
export function parseBytes(value: string | number): number | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : null;
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(value.trim());
  if (!m) return null;
  const unit = m[2]!.toUpperCase();
  const mul = UNITS[unit];
  if (mul === undefined) return null;
  const n = Math.round(Number(m[1]) * mul);
  return Number.isSafeInteger(n) ? n : null;
}

export function formatBytes(n: number | bigint): string {
  let v = Number(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}
