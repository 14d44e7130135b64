/**
 * Reads a config drive image without mounting it: vfat through mtools
 * (mlabel -s, mcopy), iso9660 through isoinfo (Rock Ridge/Joliet names).
 * The volume label must be config-2. Side effects: runs those tools.
 */
import { open } from 'node:fs/promises';
import { BasaltError } from '../../../common/src/errors.js';
import { CLOUDINIT_ERRORS } from '../errors.js';
import { run } from '../../../common/src/exec.js';

const FILES = ['openstack/latest/user_data', 'openstack/latest/meta_data.json'];

async function sniff(path: string): Promise<'iso9660' | 'vfat' | 'unknown'> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(6);
    await fh.read(b, 0, 5, 32769);
    if (b.subarray(0, 5).toString('latin1') === 'CD001') return 'iso9660';
    const boot = Buffer.alloc(512);
    await fh.read(boot, 0, 512, 0);
    if (boot[510] === 0x55 && boot[511] === 0xaa) return 'vfat';
    return 'unknown';
  } finally {
    await fh.close();
  }
}

/** Returns the config-drive files of the image, keyed by relative path. */
export async function readConfigDriveImage(path: string): Promise<Map<string, Uint8Array>> {
  const kind = await sniff(path);
  const out = new Map<string, Uint8Array>();
  if (kind === 'vfat') {
    const l = await run('mlabel', ['-i', path, '-s', '::']);
    const label = /Volume label is (.*?)\s*$/m.exec(l.stdout)?.[1]?.trim();
    if (label?.toLowerCase() !== 'config-2') throw new BasaltError(CLOUDINIT_ERRORS.E_CONFIGDRIVE_LABEL, `${path}: vfat label is ${JSON.stringify(label ?? '')}, not config-2`, { hint: 'create it with mkfs.vfat -n config-2' });
    for (const f of FILES) {
      const r = await run('mcopy', ['-n', '-i', path, `::/${f}`, '-'], { reject: false, encoding: 'buffer' });
      if (r.exitCode === 0 && r.stdoutBuffer) out.set(f, r.stdoutBuffer);
    }
    return out;
  }
  if (kind === 'iso9660') {
    const d = await run('isoinfo', ['-d', '-i', path]);
    const label = /^Volume id:\s*(.*)$/m.exec(d.stdout)?.[1]?.trim();
    if (label?.toLowerCase() !== 'config-2') throw new BasaltError(CLOUDINIT_ERRORS.E_CONFIGDRIVE_LABEL, `${path}: iso9660 volume id is ${JSON.stringify(label ?? '')}, not config-2`, { hint: 'create it with genisoimage -R -V config-2' });
    const listing = await run('isoinfo', ['-R', '-f', '-i', path]);
    const names = new Set(listing.stdout.split('\n').map((s) => s.trim().replace(/^\//, '')));
    for (const f of FILES) {
      if (!names.has(f)) continue;
      const r = await run('isoinfo', ['-R', '-i', path, '-x', `/${f}`], { encoding: 'buffer' });
      if (r.stdoutBuffer) out.set(f, r.stdoutBuffer);
    }
    return out;
  }
  throw new BasaltError(CLOUDINIT_ERRORS.E_CONFIGDRIVE_IMAGE, `${path}: neither a vfat nor an iso9660 image`);
}
