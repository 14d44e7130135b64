/**
 * The EFI system partition as the engine sees it: a directory (a mounted ESP
 * on a host) or the EFI-SYSTEM partition inside a disk image, edited with
 * mtools (`-i disk.img@@OFFSET`). Paths are absolute ESP paths (/loader/...).
 */
import { mkdir, readFile, readdir, rename, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BasaltError, fsError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import { entryInfo } from './slots.js';
import { syncDir, writeFileAtomic } from '../../../common/src/fsutil.js';
import { UE_ERRORS } from '../errors.js';

export interface Esp {
  describe: string;
  read(path: string): Promise<string | undefined>;
  /** Writes a file (a new file, or replacing one nothing boots from). */
  write(path: string, data: Uint8Array | string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
  list(dir: string): Promise<string[]>;
}

export class DirEsp implements Esp {
  constructor(readonly root: string) {}
  get describe() {
    return this.root;
  }
  private p(path: string) {
    return join(this.root, path.replace(/^\/+/, ''));
  }
  async read(path: string) {
    try {
      return await readFile(this.p(path), 'utf8');
    } catch {
      return undefined;
    }
  }
  async write(path: string, data: Uint8Array | string) {
    await writeFileAtomic(this.p(path), data);
  }
  async rename(from: string, to: string) {
    await rename(this.p(from), this.p(to)).catch((e: unknown) => {
      throw fsError(e, this.p(from), 'rename');
    });
    await syncDir(dirname(this.p(to)));
  }
  async remove(path: string) {
    await rm(this.p(path), { force: true });
  }
  async list(dir: string) {
    try {
      return (await readdir(this.p(dir))).sort();
    } catch {
      return [];
    }
  }
}

/** The ESP inside a disk image at byte `offset`, edited with mtools (no mount, no root). */
export class MtoolsEsp implements Esp {
  private readonly img: string;
  private readonly env = { MTOOLS_SKIP_CHECK: '1', MTOOLS_NO_VFAT: '0' };
  constructor(
    readonly disk: string,
    readonly offset: number,
  ) {
    this.img = `${disk}@@${offset}`;
  }
  get describe() {
    return `${this.disk} (ESP at byte ${this.offset})`;
  }
  async read(path: string) {
    const r = await run('mtype', ['-i', this.img, `::${path}`], { reject: false, env: this.env });
    return r.exitCode === 0 ? r.stdout : undefined;
  }
  private async mkdirs(dir: string) {
    const parts = dir.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const d = '/' + parts.slice(0, i).join('/');
      const parent = '/' + parts.slice(0, i - 1).join('/');
      if ((await this.list(parent)).some((n) => n.toLowerCase() === parts[i - 1]!.toLowerCase())) continue;
      const r = await run('mmd', ['-i', this.img, `::${d}`], { reject: false, env: this.env, input: '' });
      if (r.exitCode !== 0) throw new BasaltError(UE_ERRORS.E_ESP_WRITE, `${this.describe}: cannot create ${d}: ${r.stderr.trim()}`);
    }
  }
  async write(path: string, data: Uint8Array | string) {
    await this.mkdirs(dirname(path));
    const td = await mkdtemp(join(tmpdir(), 'basalt-esp-'));
    try {
      const f = join(td, 'f');
      await writeFile(f, data);
      await run('mcopy', ['-o', '-i', this.img, f, `::${path}`], { env: this.env, input: '' });
    } finally {
      await rm(td, { recursive: true, force: true });
    }
  }
  async rename(from: string, to: string) {
    await this.remove(to);
    await run('mmove', ['-o', '-i', this.img, `::${from}`, `::${to}`], { env: this.env, input: '' });
  }
  async remove(path: string) {
    await run('mdel', ['-i', this.img, `::${path}`], { reject: false, env: this.env });
  }
  async list(dir: string) {
    const r = await run('mdir', ['-b', '-i', this.img, `::${dir}`], { reject: false, env: this.env });
    if (r.exitCode !== 0) return [];
    return r.stdout
      .split('\n')
      .map((l) => l.trim().replace(/\/$/, ''))
      .filter(Boolean)
      .map((l) => l.slice(l.lastIndexOf('/') + 1))
      .filter((n) => n !== '.' && n !== '..')
      .sort();
  }
}

export async function ensureDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
}

/** The Basalt boot entries on the ESP, parsed (files that are not ours are left out). */
export function entriesOf(esp: Esp) {
  return esp.list('/loader/entries').then(async (files) => {
    const out = [];
    for (const f of files) {
      const e = entryInfo(f, await esp.read(`/loader/entries/${f}`));
      if (e) out.push(e);
    }
    return out;
  });
}
