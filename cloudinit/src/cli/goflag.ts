/**
 * Go's `flag` package command-line syntax: -name, --name, -name=value,
 * -name value (not for booleans), parsing stops at the first non-flag or "--".
 * Pure.
 */
export interface FlagSpec {
  name: string;
  bool?: boolean;
  usage: string;
  default?: string;
}

export class FlagError extends Error {}

export interface Parsed {
  values: Map<string, string>;
  rest: string[];
  help: boolean;
}

export function parseGoFlags(argv: string[], specs: FlagSpec[]): Parsed {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values = new Map<string, string>();
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.length < 2 || !a.startsWith('-')) break;
    let name = a.slice(1);
    if (name.startsWith('-')) {
      name = name.slice(1);
      if (name === '') {
        i++;
        break;
      }
    }
    if (name === '' || name.startsWith('-') || name.startsWith('=')) throw new FlagError(`bad flag syntax: ${a}`);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const spec = byName.get(name);
    if (!spec) {
      if (name === 'help' || name === 'h') return { values, rest: [], help: true };
      throw new FlagError(`flag provided but not defined: -${name}`);
    }
    if (spec.bool) {
      value ??= 'true';
      const b = parseBool(value);
      if (b === null) throw new FlagError(`invalid boolean value "${value}" for -${name}: parse error`);
      values.set(name, b ? 'true' : 'false');
    } else {
      if (value === undefined) {
        if (i + 1 >= argv.length) throw new FlagError(`flag needs an argument: -${name}`);
        value = argv[++i]!;
      }
      values.set(name, value);
    }
  }
  return { values, rest: argv.slice(i), help: false };
}

/** strconv.ParseBool */
export function parseBool(s: string): boolean | null {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return null;
}

export function usage(prog: string, specs: FlagSpec[]): string {
  const lines = [`Usage of ${prog}:`];
  for (const s of [...specs].sort((a, b) => a.name.localeCompare(b.name))) {
    lines.push(`  -${s.name}${s.bool ? '' : ' string'}`);
    lines.push(`    \t${s.usage}${s.default ? ` (default "${s.default}")` : ''}`);
  }
  return lines.join('\n') + '\n';
}
