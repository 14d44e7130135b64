/**
 * Pins and floors reach real machines only when the publisher signed them:
 * `basalt release hold|floor|drop` (as processes) re-sign the channel and its
 * TUF target; `basalt update apply` (as a process, on a disk image booted
 * from A at 1.0.0) takes a pinned group's hold and a floor before the head,
 * over Omaha from `basalt serve` with the fleet service and from the static
 * repository; a server that skips a signed floor is refused, and a pin that
 * is not signed gets noupdate and a warning naming the command that signs it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { cp, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cli } from '../../../common/test/helpers.js';
import { findPartition, partitionRange, readGpt } from '../../../common/src/gpt/index.js';
import { applyArgv, ensureDist, makeDisk, makeKeys, makeUsr, runMeasured, tempDir } from '../../test/helpers.js';
import { admin, check, startFleetServer } from '../../test/fleet.js';
import { peekEnvelope, type ChannelMeta } from '../format/metadata.js';

let t: Awaited<ReturnType<typeof tempDir>>;
let keys: Awaited<ReturnType<typeof makeKeys>>;
let repo: string;
let repoOld: string;
const usr: Record<string, string> = {};
let srv: Awaited<ReturnType<typeof startFleetServer>>;
let n = 0;

const publisher = (sub: string, v: string) => cli(['release', sub, v, '--channel', 'stable', '--key', keys.priv, '--repo', repo, '--tuf-key', keys.tuf.keyFile]);
const channelFile = async (r = repo) => peekEnvelope(await readFile(join(r, 'channels/stable.json'), 'utf8'), 'stable.json') as ChannelMeta;

/** sha256 of a slot's first `bytes` bytes. */
async function slotHash(disk: string, label: 'USR-A' | 'USR-B', bytes: number): Promise<string> {
  const gpt = await readGpt(disk);
  const r = partitionRange(gpt, findPartition(gpt, label));
  const fh = await open(disk, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    await fh.read(buf, 0, bytes, r.offset);
    return createHash('sha256').update(buf).digest('hex');
  } finally {
    await fh.close();
  }
}
const fileHash = async (p: string) => createHash('sha256').update(await readFile(p)).digest('hex');
const size = async (p: string) => (await readFile(p)).length;

function apply(disk: string, serverUrl: string, extra: string[] = []) {
  return runMeasured(applyArgv({ disk, keyring: keys.pub, tufRoot: keys.tuf.root, serverUrl, dir: t.dir, extra: ['--retry-base', '100ms', '--retries', '1', '--stall-timeout', '2s', ...extra] }));
}

beforeAll(async () => {
  t = await tempDir('basalt-stops-');
  keys = await makeKeys(t.dir);
  repo = join(t.dir, 'repo');
  await ensureDist();
  for (const v of ['1.0.0', '2.0.0', '3.0.0']) {
    usr[v] = await makeUsr(t.dir, v, { randomKiB: 64 });
    const r = await cli(['release', '--usr', usr[v], '--version', v, '--channel', 'stable', '--key', keys.priv, '--repo', repo, '--tuf-key', keys.tuf.keyFile, '--tuf-root', keys.tuf.root]);
    expect(r.exitCode, r.stderr).toBe(0);
  }
  repoOld = join(t.dir, 'repo-before-stops');
  await cp(repo, repoOld, { recursive: true });
  srv = await startFleetServer({ repo, database: join(t.dir, 'fleet.sqlite'), eventsFile: join(t.dir, 'events.jsonl') });
}, 120_000);
afterAll(async () => {
  // Set by beforeAll unless it failed.
  await (srv as typeof srv | undefined)?.close();
  await (t as typeof t | undefined)?.cleanup();
});

describe('signed pins and floors, end to end', () => {
  it('a pinned group installs the signed hold, not the head; an unsigned pin gets noupdate and a warning', async () => {
    // Unsigned first: the server offers nothing and says which command signs it.
    const warned = await admin(srv.url, 'PUT', 'groups/stable/policy', { pinnedVersion: '2.0.0' });
    expect(warned.status).toBe(200);
    expect(warned.json['warning']).toMatch(/pinned version 2\.0\.0 is not a signed hold of channel stable: run 'basalt release hold 2\.0\.0 --channel stable'/);
    expect(await check(srv.url, '1.0.0', `m-${++n}`)).toBe('noupdate');

    const r = await publisher('hold', '2.0.0');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('channel stable at 3.0.0 re-signed: floors none; holds 2.0.0');
    expect((await channelFile()).holds).toEqual(['2.0.0']);
    expect((await admin(srv.url, 'GET', 'groups/stable')).json['warning']).toBeUndefined();

    const disk = await makeDisk(t.dir, usr['1.0.0']!, '1.0.0');
    const a = await slotHash(disk, 'USR-A', await size(usr['1.0.0']!));
    const run = await apply(disk, srv.url);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^updated USR-B to 2\.0\.0; reboot to use it$/m);
    expect(await slotHash(disk, 'USR-B', await size(usr['2.0.0']!))).toBe(await fileHash(usr['2.0.0']!));
    expect(await slotHash(disk, 'USR-A', await size(usr['1.0.0']!))).toBe(a);
    await admin(srv.url, 'PUT', 'groups/stable/policy', {});
  }, 120_000);

  it('a signed floor is installed first, over Omaha and from the static repository; past it, the head', async () => {
    expect((await publisher('drop', '2.0.0')).exitCode).toBe(0);
    const r = await publisher('floor', '2.0.0');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('channel stable at 3.0.0 re-signed: floors 2.0.0; holds none');
    for (const server of [srv.url, undefined]) {
      const disk = await makeDisk(t.dir, usr['1.0.0']!, '1.0.0');
      const run = server ? await apply(disk, server) : await apply(disk, srv.url, ['--server', `static+${srv.url}`]);
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/^updated USR-B to 2\.0\.0; reboot to use it$/m);
      expect(await slotHash(disk, 'USR-B', await size(usr['2.0.0']!))).toBe(await fileHash(usr['2.0.0']!));
    }
    const past = await makeDisk(t.dir, usr['2.0.0']!, '2.0.0');
    const run = await apply(past, srv.url);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^updated USR-B to 3\.0\.0; reboot to use it$/m);
  }, 180_000);

  it('a server that skips the signed floor (offering the head to a machine below it) is refused; nothing is written', async () => {
    // An Omaha server on the repository as it was before the floor: it offers 3.0.0 to 1.0.0.
    const old = await startFleetServer({ repo: repoOld, database: join(t.dir, 'old.sqlite'), eventsFile: join(t.dir, 'old.jsonl') });
    try {
      const disk = await makeDisk(t.dir, usr['1.0.0']!, '1.0.0');
      const a = await slotHash(disk, 'USR-A', await size(usr['1.0.0']!));
      const run = await apply(disk, old.url, ['--tuf-url', srv.url]);
      expect(run.exitCode).toBe(1);
      const lines = run.stderr.split('\n').filter((l) => l.startsWith('basalt: error:'));
      expect(lines, run.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/the server offered 3\.0\.0, but channel stable's signed targets \(v\d+\) allow 2\.0\.0 for a machine at 1\.0\.0/);
      expect(await slotHash(disk, 'USR-A', await size(usr['1.0.0']!))).toBe(a);
    } finally {
      await old.close();
    }
  }, 120_000);

  it('refuses a stop that is not an older release of the repository, naming it; nothing is re-signed', async () => {
    const before = await readFile(join(repo, 'channels/stable.json'), 'utf8');
    for (const [sub, v, msg] of [
      ['floor', '3.0.0', /3\.0\.0: channel stable is at 3\.0\.0; a floor or hold is an older release/],
      ['hold', '2.5.0', /2\.5\.0: not released in .* \(no payloads\/2\.5\.0\/manifest\.json\)/],
      ['drop', '1.0.0', /1\.0\.0: is not a floor or hold of channel stable/],
      ['hold', 'latest', /not a version|version/],
    ] as const) {
      const r = await publisher(sub, v);
      expect(r.exitCode, `${sub} ${v}`).not.toBe(0);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(await readFile(join(repo, 'channels/stable.json'), 'utf8')).toBe(before);
  });
});
