/**
 * A release team's key operations through the CLI: TUF keys, a root with
 * thresholds, init, release with the offline/online split, timestamp with the
 * online key only, rotation that revokes a key, and a machine following it.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createServer, type Server } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import { silentLogger } from '../../../common/src/log.js';
import { ensureDist, tempDir, makeUsr } from '../../test/helpers.js';
import { cli } from '../../../common/test/helpers.js';
import { refreshTrust, trustDir } from './client.js';
import { channelRelease } from './decide.js';

let t: Awaited<ReturnType<typeof tempDir>>;
let srv: Server;
let base: string;

beforeAll(async () => {
  await ensureDist('dist/update-engine/src/cmd/keys.js');
  t = await tempDir('basalt-keyops-');
  srv = createServer((req, res) => {
    const file = normalize(join(t.dir, 'repo', decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    readFile(file).then((b) => res.writeHead(200).end(b), () => res.writeHead(404).end());
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(srv.address() as { port: number }).port}/`;
});
afterAll(async () => {
  srv.closeAllConnections();
  await new Promise((r) => srv.close(r));
  await t.cleanup();
});

const basalt = (args: string[]) => cli(args);

async function ok(args: string[]): Promise<string> {
  const r = await basalt(args);
  expect(r.exitCode, `basalt ${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

describe('key operations of a release team (CLI)', () => {
  it('root 2-of-3, targets 2-of-2, online timestamp key; rotation revokes a root key; a machine follows', async () => {
    const k = join(t.dir, 'keys');
    const repo = join(t.dir, 'repo');
    await ok(['keys', 'generate', '--out', k]);
    // The one-person set 'keys generate' wrote is not overwritten.
    expect((await basalt(['keys', 'generate', '--tuf', '--out', k, '--name', 'online'])).stderr).toMatch(/online\.key\.json already exists/);
    const tk = join(t.dir, 'team');
    for (const n of ['alice', 'bob', 'carol', 'dave', 't1', 't2', 'online']) await ok(['keys', 'generate', '--tuf', '--out', tk, '--name', n]);
    const f = (n: string, kind: 'key' | 'pub') => join(tk, `${n}.${kind}.json`);
    const team = join(k, 'team-root.json');
    // One root signature is below the threshold of 2.
    const low = await basalt(['keys', 'root', '--out', team, '--sign', f('alice', 'key'), '--root-key', f('alice', 'pub'), '--root-key', f('bob', 'pub'), '--root-key', f('carol', 'pub'), '--root-threshold', '2', '--targets-key', f('t1', 'pub'), '--targets-key', f('t2', 'pub'), '--targets-threshold', '2', '--snapshot-key', f('online', 'pub'), '--timestamp-key', f('online', 'pub')]);
    expect(low.exitCode).toBe(1);
    expect(low.stderr).toMatch(/root needs 2 signature\(s\) of root v1's 3 root key\(s\); 1 of them are at hand/);
    await ok(['keys', 'root', '--out', team, '--sign', f('alice', 'key'), '--sign', f('bob', 'key'), '--root-key', f('alice', 'pub'), '--root-key', f('bob', 'pub'), '--root-key', f('carol', 'pub'), '--root-threshold', '2', '--targets-key', f('t1', 'pub'), '--targets-key', f('t2', 'pub'), '--targets-threshold', '2', '--snapshot-key', f('online', 'pub'), '--timestamp-key', f('online', 'pub')]);
    expect(await ok(['release', 'init', '--repo', repo, '--tuf-root', team])).toMatch(/root v1 installed/);
    const usr = await makeUsr(t.dir, '1.0.0', { randomKiB: 64 });
    const rel = ['release', '--usr', usr, '--version', '1.0.0', '--channel', 'stable', '--key', join(k, 'release.key'), '--repo', repo, '--tuf-key', f('online', 'key'), '--tuf-key', f('t1', 'key')];
    // One targets key of two: refused before anything is written.
    const one = await basalt(rel);
    expect(one.exitCode).toBe(1);
    expect(one.stderr).toMatch(/targets needs 2 signature\(s\)/);
    await expect(stat(join(repo, 'payloads/1.0.0'))).rejects.toThrow(/ENOENT/);
    await ok([...rel, '--tuf-key', f('t2', 'key')]);

    const stateDir = join(t.dir, 'machine');
    const refresh = () => refreshTrust({ stateDir, initialRoot: team, metadataUrl: `${base}metadata/`, log: silentLogger });
    expect(channelRelease(await refresh(), 'stable').version).toBe('1.0.0');

    // The online key alone refreshes the timestamp.
    expect(await ok(['release', 'timestamp', '--repo', repo, '--tuf-key', f('online', 'key')])).toMatch(/snapshot v2 and timestamp v2 signed \(targets v1\)/);
    await refresh();

    // Rotation: bob is revoked, dave added; signed by two old (alice, carol) and two new root keys (alice, dave).
    const rot = await ok(['keys', 'rotate', '--repo', repo, '--root-key', f('alice', 'pub'), '--root-key', f('carol', 'pub'), '--root-key', f('dave', 'pub'), '--root-threshold', '2', '--sign', f('alice', 'key'), '--sign', f('carol', 'key'), '--sign', f('dave', 'key'), '--sign', f('t1', 'key'), '--sign', f('t2', 'key'), '--sign', f('online', 'key')]);
    expect(rot).toMatch(/root v2 written to .*metadata\/2\.root\.json/);
    await refresh();
    const trusted = JSON.parse(await readFile(join(trustDir(stateDir), 'root.json'), 'utf8')) as { signed: { version: number; roles: { root: { keyids: string[] } } } };
    expect(trusted.signed.version).toBe(2);
    const bobId = (JSON.parse(await readFile(f('bob', 'pub'), 'utf8')) as { keyid: string }).keyid;
    expect(trusted.signed.roles.root.keyids).not.toContain(bobId);
    // bob alone (revoked) and alice cannot make root v3.
    const bad = await basalt(['keys', 'rotate', '--repo', repo, '--sign', f('bob', 'key'), '--sign', f('alice', 'key'), '--sign', f('t1', 'key'), '--sign', f('t2', 'key'), '--sign', f('online', 'key')]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/root needs 2 signature\(s\) of root v2's 3 root key\(s\); 1 of them are at hand/);
  });
});
