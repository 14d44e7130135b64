import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BasaltError, COMMON_ERRORS, UsageError } from '../errors.js';
import { parseBytes } from '../size.js';

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
  const flag = name.length === 1 ? `-${name}` : `--${name}`;
  if (!/^-?\d+$/.test(value)) throw new BasaltError(COMMON_ERRORS.E_INVALID_VALUE, `${flag}: '${value}' is not an integer`, { hint: `give an integer from ${min} to ${max}` });
  const n = Number(value);
  if (n < min || n > max) throw new BasaltError(COMMON_ERRORS.E_INVALID_VALUE, `${flag}: ${n} is out of range`, { hint: `give an integer from ${min} to ${max}` });
  return n;
}

/** Parses sizes such as 8G, 512MiB, 1073741824 into bytes. */
export function parseSize(value: string, name: string): number {
  const n = parseBytes(value);
  if (n === null) {
    throw new UsageError(`--${name}: '${value}' is not a size`, 'use a number with an optional unit: 8G, 512M, 4GiB, 1000000000');
  }
  return n;
}
