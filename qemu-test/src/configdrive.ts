/**
 * Config drives as OpenStack and coreos-cloudinit know them: a filesystem
 * labelled config-2 holding openstack/latest/user_data.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { run } from '../../common/src/exec.js';

export type ConfigDriveFormat = 'iso' | 'vfat';

/** Writes a config drive image at `out` carrying `userData` (and optional meta_data.json). */
export async function makeConfigDrive(out: string, userData: string | Buffer, opts: { format?: ConfigDriveFormat; metaData?: Record<string, unknown> } = {}): Promise<string> {
  const format = opts.format ?? 'iso';
  const tree = await mkdtemp(join(tmpdir(), 'basalt-config-drive-'));
  try {
    const latest = join(tree, 'openstack', 'latest');
    await mkdir(latest, { recursive: true });
    await writeFile(join(latest, 'user_data'), userData);
    if (opts.metaData) await writeFile(join(latest, 'meta_data.json'), JSON.stringify(opts.metaData));
    await mkdir(dirname(out), { recursive: true });
    await rm(out, { force: true });
    if (format === 'iso') {
      await run('genisoimage', ['-quiet', '-V', 'config-2', '-J', '-R', '-o', out, tree]);
    } else {
      await run('mkfs.vfat', ['-n', 'config-2', '-C', out, '8192']);
      await run('mmd', ['-i', out, '::openstack', '::openstack/latest']);
      const files = ['user_data', ...(opts.metaData ? ['meta_data.json'] : [])];
      for (const f of files) await run('mcopy', ['-i', out, join(latest, f), `::openstack/latest/${f}`]);
    }
    return out;
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
}
