import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../common/src/errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** util.parseArgs with usage errors turned into UsageError (exit code 2). */
export function parse<O extends Options>(args: string[], options: O, cmd: string) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new UsageError(`${cmd}: ${msg}`, `see 'basalt ${cmd} --help'`);
  }
}

/** Parses an integer option in [min, max], naming the option in the error. */
export function intOpt(value: string | undefined, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`--${name}: '${value}' is not an integer`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${name}: ${n} is out of range (${min}-${max})`);
  return n;
}

const units: Record<string, number> = { '': 1, B: 1, K: 1024, KB: 1000, KIB: 1024, M: 1024 ** 2, MB: 1000 ** 2, MIB: 1024 ** 2, G: 1024 ** 3, GB: 1000 ** 3, GIB: 1024 ** 3, T: 1024 ** 4, TB: 1000 ** 4, TIB: 1024 ** 4 };

/** Parses sizes such as 8G, 512MiB, 1073741824 into bytes. */
export function parseSize(value: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(value.trim());
  const unit = m?.[2]?.toUpperCase() ?? '';
  if (!m || !(unit in units)) {
    throw new UsageError(`--${name}: '${value}' is not a size`, 'use a number with an optional unit: 8G, 512M, 4GiB, 1000000000');
  }
  return Math.round(Number(m[1]) * units[unit]!);
}
