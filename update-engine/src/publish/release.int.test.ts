import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash } from 'node:crypto';
import { zstdDecompressSync } from 'node:zlib';
import { readFile, readdir, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../../common/src/exec.js';
import { tempDir, makeUsr, makeKeys } from '../../test/helpers.js';
import { release, promote, readChannelFile, refreshChannel } from './repo.js';
import { unseal, validateManifest } from '../format/metadata.js';
import { loadKeyring } from '../format/signature.js';
import { readPrivateKeyFile } from './keys.js';
import { hashFileRange } from '../format/digest.js';

let t: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  t = await tempDir();
});
afterAll(async () => t.cleanup());

describe('basalt release', () => {
  it('publishes a format 1 payload (chunked xz), signed manifest and channel metadata that gpg and xz accept', async () => {
    const usr = await makeUsr(t.dir, '1.0.0');
    const keys = await makeKeys(t.dir);
    const key = await readPrivateKeyFile(keys.priv);
    const repo = join(t.dir, 'repo');
    const now = new Date();
    const r = await release({ usr, version: '1.0.0', channel: 'beta', key, repo, now, expiresMs: 86_400_000, chunkSize: 256 * 1024, xzLevel: 1, payloadFormat: 1 });
    expect(r.manifest).toMatchObject({ formatVersion: 1, payload: { file: 'usr.img.xz', compression: 'xz' } });
    expect(r.manifest.payload.chunks.length).toBeGreaterThan(2);
    const pdir = join(repo, 'payloads/1.0.0');
    // xz -dc of the concatenated streams gives back exactly the image.
    const dec = await run('xz', ['-dc', join(pdir, 'usr.img.xz')], { encoding: 'buffer' });
    const img = await readFile(usr);
    expect(Buffer.compare(Buffer.from(dec.stdoutBuffer!), img)).toBe(0);
    expect(r.manifest.image.sha256).toBe(await hashFileRange(usr, 0, img.length));
    expect(r.manifest.usr.rootHash).toMatch(/^[0-9a-f]{64}$/);
    // gpg accepts the detached payload signature.
    const gh = join(t.dir, 'gnupg');
    await mkdir(gh, { recursive: true, mode: 0o700 });
    await run('gpg', ['--homedir', gh, '--batch', '--import', join(keys.pub, 'release.pub.asc')]);
    const v = await run('gpg', ['--homedir', gh, '--batch', '--verify', join(pdir, 'usr.img.xz.sig'), join(pdir, 'usr.img.xz')], { reject: false });
    expect(v.stderr).toMatch(/Good signature/);
    expect(v.exitCode).toBe(0);
    // A changed payload fails gpg.
    const bad = join(t.dir, 'bad.xz');
    const pay = await readFile(join(pdir, 'usr.img.xz'));
    pay[100] = pay[100]! ^ 1;
    await writeFile(bad, pay);
    const v2 = await run('gpg', ['--homedir', gh, '--batch', '--verify', join(pdir, 'usr.img.xz.sig'), bad], { reject: false });
    expect(v2.exitCode).not.toBe(0);
    // Channel metadata verifies with the keyring, and the manifest too.
    const ring = await loadKeyring(keys.pub);
    const ch = await readChannelFile(repo, 'beta', ring, now);
    expect(ch.version).toBe('1.0.0');
    const m = validateManifest(await unseal(await readFile(join(repo, ch.manifest), 'utf8'), ring, 'manifest'), 'manifest');
    expect(m.payload.sha256).toBe(ch.payload.sha256);
    // Expired metadata is refused.
    await expect(readChannelFile(repo, 'beta', ring, new Date(now.getTime() + 2 * 86_400_000))).rejects.toThrow(/expired/);
    // Another key's keyring refuses it.
    const other = await makeKeys(t.dir, true);
    await expect(readChannelFile(repo, 'beta', await loadKeyring(other.pub), now)).rejects.toMatchObject({ code: 'E_SIGNATURE_UNKNOWN_KEY' });
    // Same version again is refused; older too.
    await expect(release({ usr, version: '1.0.0', channel: 'beta', key, repo, now, expiresMs: 1000 })).rejects.toMatchObject({ code: 'E_RELEASE_EXISTS' });
    const usrOld = await makeUsr(t.dir, '0.9.0');
    await expect(release({ usr: usrOld, version: '0.9.0', channel: 'beta', key, repo, now, expiresMs: 1000 })).rejects.toMatchObject({ code: 'E_VERSION_NOT_NEWER' });
    // Promote to stable leaves the manifest's bytes alone: both channel files name the same manifest hash.
    const before = await readFile(join(repo, 'payloads/1.0.0/manifest.json'));
    const st = await promote(repo, '1.0.0', 'beta', 'stable', key, now, 86_400_000, 50);
    expect(st.rollout.percent).toBe(50);
    const ch2 = await readChannelFile(repo, 'stable', ring, now);
    expect(await readFile(join(repo, ch2.manifest))).toEqual(before);
    expect(ch2.manifestSha256).toBe((await readChannelFile(repo, 'beta', ring, now)).manifestSha256);
    const m2 = validateManifest(await unseal(await readFile(join(repo, ch2.manifest), 'utf8'), ring, 'manifest'), 'manifest');
    expect(m2.channels).toEqual(['beta']);
    await expect(promote(repo, '1.0.0', 'alpha', 'stable', key, now, 1000)).rejects.toMatchObject({ code: 'E_PROMOTE_SOURCE' });
    const rf = await refreshChannel(repo, 'stable', key, now, 5 * 86_400_000, 100);
    expect(rf.serial).toBe(2);
  });

  it('gives the same format 1 payload bytes with one xz job and with four (chunks compressed at once, written in order)', async () => {
    const usr = await makeUsr(t.dir, '2.0.0', { randomKiB: 1500 });
    const keys = await makeKeys(t.dir);
    const key = await readPrivateKeyFile(keys.priv);
    const now = new Date();
    const payloads: Buffer[] = [];
    const tables: unknown[] = [];
    // With four jobs, the xz that takes the first ticket waits on a FIFO until the fourth has
    // finished: chunks complete out of image order, and must still be written in it.
    const tickets = join(t.dir, 'xz-tickets');
    const fifo = join(t.dir, 'xz-gate');
    await mkdir(tickets);
    await run('mkfifo', [fifo]);
    const stub = join(t.dir, 'xz-out-of-order');
    await writeFile(
      stub,
      [
        '#!/bin/sh',
        `n=1; while ! mkdir ${tickets}/$n 2>/dev/null; do n=$((n+1)); done`,
        `if [ "$n" -eq 1 ]; then cat ${fifo} > /dev/null; fi`,
        'xz "$@"; rc=$?',
        `if [ "$n" -eq 4 ]; then echo go > ${fifo}; fi`,
        'exit $rc',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    for (const jobs of [1, 4]) {
      const repo = join(t.dir, `repo-jobs-${jobs}`);
      if (jobs === 4) process.env['BASALT_TOOL_XZ'] = stub;
      try {
        // 100 KiB chunks: the image does not end on a chunk boundary, so the short last chunk is covered too.
        const r = await release({ usr, version: '2.0.0', channel: 'beta', key, repo, now, expiresMs: 86_400_000, chunkSize: 100 * 1024, xzLevel: 1, jobs, payloadFormat: 1 });
        expect(r.manifest.image.size % (100 * 1024)).not.toBe(0);
        payloads.push(await readFile(join(repo, 'payloads/2.0.0/usr.img.xz')));
        tables.push(r.manifest.payload.chunks);
      } finally {
        delete process.env['BASALT_TOOL_XZ'];
      }
    }
    expect((await readdir(tickets)).length).toBeGreaterThan(4);
    expect(Buffer.compare(payloads[0]!, payloads[1]!)).toBe(0);
    expect(tables[1]).toEqual(tables[0]);
    const dec = await run('xz', ['-dc', join(t.dir, 'repo-jobs-4/payloads/2.0.0/usr.img.xz')], { encoding: 'buffer' });
    expect(Buffer.compare(Buffer.from(dec.stdoutBuffer!), await readFile(usr))).toBe(0);
  });

  it('publishes nothing when one xz job fails while others are running', async () => {
    const usr = await makeUsr(t.dir, '3.0.0');
    const keys = await makeKeys(t.dir);
    const key = await readPrivateKeyFile(keys.priv);
    const repo = join(t.dir, 'repo-xz-fails');
    // An xz that fails on its third run (the real one otherwise). Each run takes a numbered
    // ticket with mkdir, which is atomic: a count read back from a shared file could skip 3
    // when runs start at once, and then no run failed.
    const tickets = join(t.dir, 'xz-fail-tickets');
    await mkdir(tickets);
    const stub = join(t.dir, 'xz-fails-third');
    await writeFile(
      stub,
      [
        '#!/bin/sh',
        `n=1; while ! mkdir ${tickets}/$n 2>/dev/null; do n=$((n+1)); done`,
        `if [ "$n" -eq 3 ]; then echo 'xz: out of memory' >&2; exit 1; fi`,
        'exec xz "$@"',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    process.env['BASALT_TOOL_XZ'] = stub;
    try {
      await expect(release({ usr, version: '3.0.0', channel: 'beta', key, repo, now: new Date(), expiresMs: 86_400_000, chunkSize: 64 * 1024, xzLevel: 1, jobs: 3, payloadFormat: 1 })).rejects.toThrow(/xz/);
    } finally {
      delete process.env['BASALT_TOOL_XZ'];
    }
    // Neither the version nor a temporary directory is left in payloads/, and no channel points anywhere.
    expect(await readdir(join(repo, 'payloads'))).toEqual([]);
    await expect(readdir(join(repo, 'channels'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
  it('publishes a format 2 payload: incompressible chunks stored as they are, compressible ones as zstd frames, the same bytes whatever the jobs', async () => {
    const usr = await makeUsr(t.dir, '5.0.0', { randomKiB: 2048 });
    const keys = await makeKeys(t.dir);
    const key = await readPrivateKeyFile(keys.priv);
    const img = await readFile(usr);
    const payloads: Buffer[] = [];
    for (const jobs of [1, 4]) {
      const repo = join(t.dir, `repo-f2-${jobs}`);
      const r = await release({ usr, version: '5.0.0', channel: 'beta', key, repo, now: new Date(), expiresMs: 86_400_000, chunkSize: 128 * 1024, jobs });
      const m = r.manifest;
      if (m.formatVersion !== 2) throw new Error(`format ${m.formatVersion}`);
      expect(m.payload.file).toBe('usr.img.payload');
      const kinds = new Set(m.payload.chunks.map((c) => c.compression));
      // The image is half random (squashfs leaves it as it is) and half text (compressed by gzip already, but loosely).
      expect(kinds).toEqual(new Set(['none', 'zstd']));
      const pay = await readFile(join(repo, 'payloads/5.0.0/usr.img.payload'));
      payloads.push(pay);
      // Each chunk, decoded by the zstd tool or taken as it is, gives back its part of the image.
      const parts: Buffer[] = [];
      for (const c of m.payload.chunks) {
        const stored = pay.subarray(c.offset, c.offset + c.size);
        expect(createHash('sha256').update(stored).digest('hex')).toBe(c.sha256);
        if (c.compression === 'none') parts.push(stored);
        else parts.push(Buffer.from((await run('zstd', ['-dc'], { input: stored, encoding: 'buffer' })).stdoutBuffer!));
        expect(parts.at(-1)!.length).toBe(c.uncompressedSize);
      }
      expect(Buffer.compare(Buffer.concat(parts), img)).toBe(0);
      const stored = m.payload.chunks.filter((c) => c.compression === 'none');
      expect(stored.every((c) => c.size === c.uncompressedSize)).toBe(true);
      // The manifest that goes out verifies and validates as format 2, and gpg accepts the payload's signature.
      const back = validateManifest(await unseal(await readFile(join(repo, 'payloads/5.0.0/manifest.json'), 'utf8'), await loadKeyring(keys.pub), 'manifest'), 'manifest');
      expect(back).toEqual(m);
      const gh = join(t.dir, `gnupg-f2-${jobs}`);
      await mkdir(gh, { recursive: true, mode: 0o700 });
      await run('gpg', ['--homedir', gh, '--batch', '--import', join(keys.pub, 'release.pub.asc')]);
      const v = await run('gpg', ['--homedir', gh, '--batch', '--verify', join(repo, 'payloads/5.0.0/usr.img.payload.sig'), join(repo, 'payloads/5.0.0/usr.img.payload')], { reject: false });
      expect(v.exitCode).toBe(0);
    }
    expect(Buffer.compare(payloads[0]!, payloads[1]!)).toBe(0);
  });

  it('refuses a chunk size the client would not hold, naming the option', async () => {
    const usr = await makeUsr(t.dir, '6.0.0', { randomKiB: 64 });
    const key = await readPrivateKeyFile((await makeKeys(t.dir)).priv);
    await expect(release({ usr, version: '6.0.0', channel: 'beta', key, repo: join(t.dir, 'repo-big'), now: new Date(), expiresMs: 1000, chunkSize: 128 * 1024 * 1024 })).rejects.toThrow(/--chunk-size: 134217728 bytes is not from 4 KiB to 64 MiB/);
  });
  it('publishes a delta from a released version: the new image is the old one\'s chunks plus a little data, with a signed manifest naming the full release', async () => {
    const keys = await makeKeys(t.dir);
    const key = await readPrivateKeyFile(keys.priv);
    const repo = join(t.dir, 'repo-delta');
    const usr1 = await makeUsr(t.dir, '7.0.0', { randomKiB: 4096 });
    const usr2 = await makeUsr(t.dir, '7.1.0', { like: '7.0.0' });
    await release({ usr: usr1, version: '7.0.0', channel: 'beta', key, repo, now: new Date(), expiresMs: 86_400_000 });
    const r = await release({ usr: usr2, version: '7.1.0', channel: 'beta', key, repo, now: new Date(), expiresMs: 86_400_000, deltaFrom: ['7.0.0'] });
    const d = r.deltas[0]!;
    expect(d.delta).toMatchObject({ from: '7.0.0', full: { manifest: '../manifest.json', payload: '../usr.img.payload', size: r.manifest.payload.size, sha256: r.manifest.payload.sha256 } });
    // A one-file bump: the delta sends a small part of the full payload.
    expect(d.payload.size).toBeLessThan(r.manifest.payload.size / 4);
    const dir = join(repo, 'payloads/7.1.0/delta-from-7.0.0');
    const back = validateManifest(await unseal(await readFile(join(dir, 'manifest.json'), 'utf8'), await loadKeyring(keys.pub), 'delta manifest'), 'delta manifest');
    expect(back).toEqual(d);
    // The seed (7.0.0's image) and the delta's payload give back 7.1.0's image exactly.
    const seed = await readFile(usr1);
    const pay = await readFile(join(dir, 'usr.img.payload'));
    const parts = d.payload.chunks.map((c) => {
      if (c.compression === 'seed') return seed.subarray(c.seedOffset, c.seedOffset! + c.uncompressedSize);
      const stored = pay.subarray(c.offset, c.offset + c.size);
      return c.compression === 'zstd' ? zstdDecompressSync(stored) : stored;
    });
    expect(Buffer.compare(Buffer.concat(parts), await readFile(usr2))).toBe(0);
    // A delta from a version that is not released is refused before anything is written.
    const usr3 = await makeUsr(t.dir, '7.2.0', { like: '7.1.0' });
    await expect(release({ usr: usr3, version: '7.2.0', channel: 'beta', key, repo, now: new Date(), expiresMs: 1000, deltaFrom: ['6.0.0'] })).rejects.toMatchObject({ code: 'E_DELTA_BASE', message: expect.stringMatching(/--delta-from: version 6\.0\.0 is not released/) as unknown });
    expect((await readdir(join(repo, 'payloads'))).sort()).toEqual(['7.0.0', '7.1.0']);
    // Deltas from several releases at once, each in its folder.
    const r3 = await release({ usr: usr3, version: '7.2.0', channel: 'beta', key, repo, now: new Date(), expiresMs: 86_400_000, deltaFrom: ['7.0.0', '7.1.0'] });
    expect(r3.deltas.map((x) => x.delta?.from)).toEqual(['7.0.0', '7.1.0']);
    // Promoting the release leaves its deltas' manifests as they are (their hashes stay the signed ones); a machine on the new channel is offered them through the channel's release.
    const deltaBefore = await readFile(join(repo, 'payloads/7.2.0/delta-from-7.0.0/manifest.json'));
    await promote(repo, '7.2.0', 'beta', 'stable', key, new Date(), 86_400_000);
    for (const from of ['7.0.0', '7.1.0']) {
      const p = join(repo, `payloads/7.2.0/delta-from-${from}/manifest.json`);
      expect(validateManifest(await unseal(await readFile(p, 'utf8'), await loadKeyring(keys.pub), p), p).channels).toEqual(['beta']);
    }
    expect(await readFile(join(repo, 'payloads/7.2.0/delta-from-7.0.0/manifest.json'))).toEqual(deltaBefore);
    expect((await readdir(join(repo, 'payloads/7.2.0'))).sort()).toEqual(['delta-from-7.0.0', 'delta-from-7.1.0', 'manifest.json', 'usr.img.payload', 'usr.img.payload.sig']);
  });
});

