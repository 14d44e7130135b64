/** Locates files shipped with Basalt (configs/, package.json) from compiled or source modules. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/** The Basalt project (or installed app) root: the nearest parent holding Basalt's package.json. */
export function projectRoot(): string {
  if (cached) return cached;
  if (process.env['BASALT_ROOT']) return (cached = process.env['BASALT_ROOT']);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'basalt') return (cached = dir);
      } catch {
        /* keep looking */
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the Basalt project root (package.json named basalt)');
    dir = up;
  }
}

export function configsDir(): string {
  return join(projectRoot(), 'configs');
}
