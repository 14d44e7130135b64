/**
 * Cross-checks `basalt disk` against real partitioning tools (sfdisk, sgdisk,
 * cgpt) on sparse image files.
 */
import { createHash } from 'node:crypto';
import { chmod, open, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, sh, testdir } from '../../test/helpers.js';

interface SfdiskPart { node: string; start: number; size: number; type: string; uuid: string; name: string; attrs?: string }

async function sfdisk(img: string) {
  const r = await sh('sfdisk', ['--json', img]);
  return (JSON.parse(r.stdout) as { partitiontable: { id: string; partitions: SfdiskPart[]; firstlba: number; lastlba: number } }).partitiontable;
}

async function show(img: string) {
  const r = await cli(['disk', 'show', img, '--json']);
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as {
    diskGuid: string;
    status: { primaryOk: boolean; backupOk: boolean; problems: string[] };
    partitions: { index: number; label: string; type: string; guid: string; firstLba: number; sectors: number; attributes: string; slot?: { priority: number; tries: number; successful: boolean } }[];
  };
}

async function cgptField(img: string, i: number, f: string): Promise<string> {
  return (await sh('cgpt', ['show', '-i', String(i), `-${f}`, img])).stdout.trim();
}

/** Hash of everything a GPT write can touch (both ends of the disk), plus size and mode. */
async function sha(f: string): Promise<string> {
  const fh = await open(f, 'r');
  try {
    const st = await fh.stat();
    const h = createHash('sha256').update(`${st.size}:${st.mode}:`);
    const n = Math.min(st.size, 1024 * 1024);
    const head = Buffer.alloc(n);
    await fh.read(head, 0, n, 0);
    const tail = Buffer.alloc(n);
    await fh.read(tail, 0, n, st.size - n);
    return h.update(head).update(tail).digest('hex');
  } finally {
    await fh.close();
  }
}

/** sfdisk prints attribute bits as "GUID:48,52,56". */
function sfdiskBits(attrs: string | undefined): number[] {
  if (!attrs) return [];
  const m = /GUID:([\d,]+)/.exec(attrs);
  return m ? m[1]!.split(',').map(Number) : [];
}

async function newDisk(size = '8G'): Promise<string> {
  const dir = await testdir();
  const img = join(dir, 'disk.img');
  const r = await cli(['disk', 'create', img, '--size', size]);
  expect(r.exitCode, r.stderr).toBe(0);
  return img;
}

describe('basalt disk create, read by real tools', () => {
  it('reads the same in sfdisk --json and sgdisk -p, and passes sgdisk -v', async () => {
    const img = await newDisk();
    const ours = await show(img);
    const sf = await sfdisk(img);
    expect(sf.id.toLowerCase()).toBe(ours.diskGuid);
    expect(sf.partitions).toHaveLength(ours.partitions.length);
    for (const p of ours.partitions) {
      const s = sf.partitions.find((x) => x.node.endsWith(`disk.img${p.index}`))!;
      expect(s, `partition ${p.index} in sfdisk`).toBeDefined();
      expect(s.name).toBe(p.label);
      expect(s.type.toLowerCase()).toBe(p.type);
      expect(s.uuid.toLowerCase()).toBe(p.guid);
      expect(s.start).toBe(p.firstLba);
      expect(s.size).toBe(p.sectors);
    }
    const sg = await sh('sgdisk', ['-p', img]);
    for (const p of ours.partitions) {
      const row = new RegExp(`^\\s+${p.index}\\s+${p.firstLba}\\s+${p.firstLba + p.sectors - 1}\\s+.*\\s${p.label}$`, 'm');
      expect(sg.stdout).toMatch(row);
      const info = await sh('sgdisk', ['-i', String(p.index), img]);
      expect(info.stdout).toContain(`Partition unique GUID: ${p.guid.toUpperCase()}`);
      expect(info.stdout).toContain(`Partition GUID code: ${p.type.toUpperCase()}`);
    }
    const v = await sh('sgdisk', ['-v', img]);
    expect(v.stdout).toContain('No problems found');
    // The CoreOS layout: numbers, labels, USR UUIDs.
    expect(ours.partitions.map((p) => `${p.index}:${p.label}`)).toEqual(['1:EFI-SYSTEM', '2:BIOS-BOOT', '3:USR-A', '4:USR-B', '6:OEM', '7:OEM-CONFIG', '9:ROOT']);
    expect(ours.partitions.find((p) => p.index === 3)!.guid).toBe('7130c94a-213a-4e5a-8e26-6cce9662f132');
    expect(ours.partitions.find((p) => p.index === 4)!.guid).toBe('e03dd35c-7c2d-4a47-b3fe-27f15780a57c');
  });

  it('makes a sparse file', async () => {
    const img = await newDisk('16G');
    const r = await sh('du', ['-k', img]);
    expect(Number(r.stdout.split(/\s/)[0])).toBeLessThan(1024);
  });
});

describe('slot attributes agree with cgpt and sfdisk', () => {
  it('basalt disk set is read the same by cgpt show -P/-T/-S/-A and sfdisk attrs', async () => {
    const img = await newDisk();
    const r = await cli(['disk', 'set', img, '-i', '4', '--priority', '5', '--tries', '3', '--successful', '1']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await cgptField(img, 4, 'P')).toBe('5');
    expect(await cgptField(img, 4, 'T')).toBe('3');
    expect(await cgptField(img, 4, 'S')).toBe('1');
    expect(await cgptField(img, 4, 'A')).toBe('0x135');
    const sf = await sfdisk(img);
    // priority 5 = bits 48,50; tries 3 = bits 52,53; successful = 56
    expect(sfdiskBits(sf.partitions.find((p) => p.node.endsWith('4'))!.attrs)).toEqual([48, 50, 52, 53, 56]);
    // USR-A as the layout sets it: priority 1, successful.
    expect(sfdiskBits(sf.partitions.find((p) => p.node.endsWith('3'))!.attrs)).toEqual([48, 56]);
    expect((await sh('sgdisk', ['-v', img])).stdout).toContain('No problems found');
  });

  it('attributes set by cgpt add are read the same by basalt disk show', async () => {
    const img = await newDisk();
    await sh('cgpt', ['add', '-i', '3', '-P', '7', '-T', '15', '-S', '0', img]);
    await sh('cgpt', ['add', '-i', '4', '-P', '0', '-T', '2', '-S', '1', img]);
    const ours = await show(img);
    expect(ours.partitions.find((p) => p.index === 3)!.slot).toEqual({ priority: 7, tries: 15, successful: false });
    expect(ours.partitions.find((p) => p.index === 4)!.slot).toEqual({ priority: 0, tries: 2, successful: true });
    expect(ours.status.problems).toEqual([]);
  });

  it('prioritize after an update gives B priority 2 and A priority 1, as cgpt reads them', async () => {
    const img = await newDisk();
    expect((await cli(['disk', 'set', img, '-i', '4', '--tries', '1', '--successful', '0'])).exitCode).toBe(0);
    const r = await cli(['disk', 'prioritize', img, '-i', '4']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await cgptField(img, 4, 'P')).toBe('2');
    expect(await cgptField(img, 3, 'P')).toBe('1');
    expect(await cgptField(img, 4, 'T')).toBe('1');
    expect(await cgptField(img, 3, 'S')).toBe('1');
  });

  it('next --commit decrements tries as a boot attempt does, and falls back when they run out', async () => {
    const img = await newDisk();
    await cli(['disk', 'set', img, '-i', '4', '--tries', '1', '--successful', '0']);
    await cli(['disk', 'prioritize', img, '-i', '4']);
    const first = await cli(['disk', 'next', img, '--commit', '--json']);
    expect(JSON.parse(first.stdout)).toMatchObject({ index: 4, label: 'USR-B', committed: true });
    expect(await cgptField(img, 4, 'T')).toBe('0');
    const second = await cli(['disk', 'next', img, '--commit', '--json']);
    expect(JSON.parse(second.stdout)).toMatchObject({ index: 3, label: 'USR-A', committed: false });
    // Without --commit nothing is written.
    await cli(['disk', 'set', img, '-i', '4', '--tries', '2']);
    const before = await sha(img);
    const peek = await cli(['disk', 'next', img]);
    expect(peek.stdout).toMatch(/^4 USR-B /);
    expect(await sha(img)).toBe(before);
  });
});

describe('repair and grow', () => {
  it('repairs an overwritten primary header so that sgdisk -v passes again', async () => {
    const img = await newDisk();
    await cli(['disk', 'set', img, '-i', '4', '--priority', '3']);
    const fh = await open(img, 'r+');
    await fh.write(Buffer.alloc(512, 0xab), 0, 512, 512);
    await fh.close();
    const bad = await sh('sgdisk', ['-v', img], { reject: false });
    expect(bad.stdout + bad.stderr).toMatch(/corrupt GPT|invalid main GPT header|CRC/);
    const ours = await show(img);
    expect(ours.status.primaryOk).toBe(false);
    expect(ours.partitions.find((p) => p.index === 4)!.slot!.priority).toBe(3);
    const r = await cli(['disk', 'repair', img]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/repaired/);
    expect((await sh('sgdisk', ['-v', img])).stdout).toContain('No problems found');
    expect(await cgptField(img, 4, 'P')).toBe('3');
    expect((await cli(['disk', 'repair', img])).stdout).toMatch(/nothing to repair/);
  });

  it('repairs an overwritten backup from the primary', async () => {
    const img = await newDisk('6G');
    const fh = await open(img, 'r+');
    const size = (await fh.stat()).size;
    await fh.write(Buffer.alloc(512), 0, 512, size - 512);
    await fh.close();
    expect((await show(img)).status.backupOk).toBe(false);
    expect((await cli(['disk', 'repair', img])).exitCode).toBe(0);
    expect((await sh('sgdisk', ['-v', img])).stdout).toContain('No problems found');
  });

  it('a write cut after the backup copy leaves a disk that repair restores', async () => {
    const img = await newDisk();
    // Simulate the cut: write the new table (backup first, then primary), then
    // put the old primary back, as if the primary write never happened.
    const fh = await open(img, 'r+');
    const oldPrimary = Buffer.alloc(34 * 512);
    await fh.read(oldPrimary, 0, oldPrimary.length, 0);
    await fh.close();
    expect((await cli(['disk', 'set', img, '-i', '4', '--priority', '9'])).exitCode).toBe(0);
    const fh2 = await open(img, 'r+');
    await fh2.write(oldPrimary, 0, oldPrimary.length, 0);
    await fh2.close();
    // Both copies are valid but differ; the primary (old state) is authoritative.
    const mid = await show(img);
    expect(mid.status.problems).toContain('primary and backup GPT differ');
    expect(mid.partitions.find((p) => p.index === 4)!.slot!.priority).toBe(0);
    expect((await cli(['disk', 'repair', img])).exitCode).toBe(0);
    expect((await sh('sgdisk', ['-v', img])).stdout).toContain('No problems found');
    expect(await cgptField(img, 4, 'P')).toBe('0');
  });

  it('grows ROOT to the end of a bigger disk and moves the backup GPT', async () => {
    const img = await newDisk('6G');
    const before = (await show(img)).partitions.find((p) => p.index === 9)!;
    await truncate(img, 10 * 1024 ** 3);
    const r = await cli(['disk', 'grow', img, '-i', '9', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const after = (await show(img)).partitions.find((p) => p.index === 9)!;
    expect(after.firstLba).toBe(before.firstLba);
    expect(after.sectors - before.sectors).toBeGreaterThanOrEqual(4 * 1024 * 2048 - 2048);
    const sf = await sfdisk(img);
    expect(sf.lastlba).toBe(10 * 1024 * 2048 - 34);
    expect((await sh('sgdisk', ['-v', img])).stdout).toContain('No problems found');
    // Growing again is a no-op.
    expect((await cli(['disk', 'grow', img, '-i', '9'])).stdout).toMatch(/already fills the disk/);
  });
});

const isRoot = process.getuid?.() === 0;

describe('block devices', () => {
  it.skipIf(!isRoot)('reads and writes the GPT through a loop device (skipped unless root: losetup needs it)', async () => {
    const img = await newDisk('6G');
    const dev = (await sh('losetup', ['--find', '--show', img])).stdout.trim();
    try {
      const r = await cli(['disk', 'set', dev, '-i', '4', '--priority', '3', '--tries', '1']);
      expect(r.exitCode, r.stderr).toBe(0);
      const s = await cli(['disk', 'show', dev, '--json']);
      const j = JSON.parse(s.stdout) as { totalSectors: number; partitions: { index: number; slot?: { priority: number; tries: number } }[] };
      expect(j.totalSectors).toBe(6 * 1024 * 2048);
      expect(j.partitions.find((p) => p.index === 4)!.slot).toMatchObject({ priority: 3, tries: 1 });
    } finally {
      await sh('losetup', ['-d', dev]);
    }
    expect(await cgptField(img, 4, 'P')).toBe('3');
  });
});

describe('bad input: one clear line, exit 1, the file unchanged', () => {
  const cases: { name: string; prep: (img: string) => Promise<void>; args: (img: string) => string[]; msg: RegExp }[] = [
    { name: 'not a GPT', prep: async (img) => writeFile(img, Buffer.alloc(4 * 1024 * 1024)), args: (img) => ['disk', 'set', img, '-i', '3', '--priority', '2'], msg: /no GPT partition table found/ },
    { name: 'a truncated file', prep: async (img) => truncate(img, 2 * 1024 ** 3), args: (img) => ['disk', 'show', img], msg: /larger disk than the file/ },
    { name: 'an unknown partition', prep: async () => {}, args: (img) => ['disk', 'set', img, '-i', '5', '--priority', '2'], msg: /no partition 5/ },
    { name: 'priority 16', prep: async () => {}, args: (img) => ['disk', 'set', img, '-i', '3', '--priority', '16'], msg: /--priority: 16 is out of range/ },
    { name: 'a read-only file', prep: async (img) => chmod(img, 0o444), args: (img) => ['disk', 'set', img, '-i', '3', '--priority', '2'], msg: /read-only/ },
    { name: 'prioritize a non-USR partition', prep: async () => {}, args: (img) => ['disk', 'prioritize', img, '-i', '9'], msg: /not a USR slot/ },
    { name: 'a missing file', prep: async (img) => { await writeFile(img, ''); await truncate(img, 0); }, args: (img) => ['disk', 'show', img + '.nope'], msg: /no such file/ },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const img = await newDisk();
      await c.prep(img);
      const before = await sha(img);
      const r = await cli(c.args(img));
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(c.msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(await sha(img)).toBe(before);
    });
  }
  it('usage errors exit 2', async () => {
    const img = await newDisk();
    expect((await cli(['disk', 'set', img])).exitCode).toBe(2);
    expect((await cli(['disk', 'frobnicate', img])).exitCode).toBe(2);
    expect((await cli(['nosuchcommand'])).exitCode).toBe(2);
    expect((await cli(['disk', 'create', img + '2'])).exitCode).toBe(2);
  });
  it('create refuses to overwrite an existing file', async () => {
    const img = await newDisk();
    const before = await sha(img);
    const r = await cli(['disk', 'create', img, '--size', '8G']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/already exists/);
    expect(await sha(img)).toBe(before);
  });
});
