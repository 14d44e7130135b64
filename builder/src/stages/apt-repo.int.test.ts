/**
 * An extra apt repository as the packages stage gives it to mmdebstrap: a
 * signed flat repository served over HTTP, its key in a folder of the stage
 * (signed-by=<path on the build host>). mmdebstrap installs its package with
 * the right key and refuses the repository with another one. Needs root,
 * mmdebstrap, gpg and dpkg-dev (skipped without them).
 */
import { createReadStream, existsSync } from 'node:fs';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { haveTool, run } from '../../../common/src/exec.js';
import { freePort, testdir } from '../../../common/test/helpers.js';
import { aptKeyName, aptSourceLine } from './packages.js';

const tools = ['mmdebstrap', 'gpg', 'gpgconf', 'dpkg-deb', 'dpkg-scanpackages'];
const ready = process.getuid?.() === 0 && (await Promise.all(tools.map((t) => haveTool(t)))).every(Boolean);

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A GnuPG home with one signing key; its agent is stopped after the test. */
async function gpgHome(dir: string, name: string): Promise<{ env: Record<string, string>; publicKey: string }> {
  const home = join(dir, `gnupg-${name}`);
  await mkdir(home, { mode: 0o700 });
  const env = { GNUPGHOME: home };
  cleanups.push(() => run('gpgconf', ['--kill', 'gpg-agent'], { env, reject: false }));
  await run('gpg', ['--batch', '--quiet', '--passphrase', '', '--quick-gen-key', `${name} <${name}@example.com>`, 'ed25519', 'sign', 'never'], { env });
  const publicKey = join(dir, `${name}.asc`);
  await writeFile(publicKey, (await run('gpg', ['--batch', '--armor', '--export'], { env })).stdout);
  return { env, publicKey };
}

/** A flat repository (Packages, Release, InRelease signed with `env`'s key) holding one package. */
async function flatRepo(dir: string, env: Record<string, string>): Promise<string> {
  const pkg = join(dir, 'pkg');
  await mkdir(join(pkg, 'DEBIAN'), { recursive: true });
  await mkdir(join(pkg, 'usr/share/basalt-apt-test'), { recursive: true });
  await writeFile(join(pkg, 'DEBIAN/control'), 'Package: basalt-apt-test\nVersion: 1.0\nArchitecture: all\nMaintainer: Basalt tests <tests@example.com>\nDescription: a package from an extra repository\n');
  await writeFile(join(pkg, 'usr/share/basalt-apt-test/hello'), 'hello from the extra repository\n');
  const repo = join(dir, 'repo');
  await mkdir(repo);
  await run('dpkg-deb', ['--root-owner-group', '-b', pkg, join(repo, 'basalt-apt-test_1.0_all.deb')]);
  const packages = (await run('dpkg-scanpackages', ['--multiversion', '.', '/dev/null'], { cwd: repo })).stdout;
  await writeFile(join(repo, 'Packages'), packages);
  const { createHash } = await import('node:crypto');
  const sum = createHash('sha256').update(packages).digest('hex');
  await writeFile(join(repo, 'Release'), `Origin: basalt-test\nLabel: basalt-test\nSuite: ./\nDate: Mon, 01 Jan 2024 00:00:00 UTC\nSHA256:\n ${sum} ${Buffer.byteLength(packages)} Packages\n`);
  await run('gpg', ['--batch', '--yes', '--clearsign', '-o', join(repo, 'InRelease'), join(repo, 'Release')], { env });
  return repo;
}

/** Serves `root` over HTTP on 127.0.0.1; returns its URL. */
async function serve(root: string): Promise<string> {
  const port = await freePort();
  const server: Server = createServer((req, res) => {
    const f = join(root, decodeURIComponent((req.url ?? '/').split('?')[0]!));
    stat(f).then(
      (st) => {
        if (!st.isFile()) throw new Error('not a file');
        createReadStream(f).pipe(res);
      },
      () => {
        res.statusCode = 404;
        res.end();
      },
    ).catch(() => {
      res.statusCode = 404;
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${port}`;
}

describe.skipIf(!ready)('extra apt repository', () => {
  it('installs from it with its key, and refuses it with another key', async () => {
    const dir = await testdir();
    const signer = await gpgHome(dir, 'signer');
    const other = await gpgHome(dir, 'other');
    const url = await serve(await flatRepo(dir, signer.env));
    const repo = { url, suite: './', components: ['main'], key: signer.publicKey };
    // As the packages stage does: the key copied into the stage's folder, readable by apt's sandbox user.
    const keys = join(dir, 'stage/apt-keys');
    await mkdir(keys, { recursive: true });
    const keyBytes = await readFile(signer.publicKey);
    const keyFile = join(keys, aptKeyName(0, keyBytes));
    expect(keyFile.endsWith('.asc')).toBe(true);
    await writeFile(keyFile, keyBytes);
    await chmod(keyFile, 0o644);
    const target = join(dir, 'root');
    await run('mmdebstrap', ['--mode=root', '--variant=extract', '--include=basalt-apt-test', '--quiet', 'bookworm', target, aptSourceLine(repo, keyFile)]);
    expect(await readFile(join(target, 'usr/share/basalt-apt-test/hello'), 'utf8')).toBe('hello from the extra repository\n');
    const wrong = join(keys, 'repo-01.asc');
    await writeFile(wrong, await readFile(other.publicKey));
    await chmod(wrong, 0o644);
    const r = await run('mmdebstrap', ['--mode=root', '--variant=extract', '--include=basalt-apt-test', 'bookworm', join(dir, 'root2'), aptSourceLine(repo, wrong)], { reject: false });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/NO_PUBKEY|not signed/);
    expect(existsSync(join(dir, 'root2/usr/share/basalt-apt-test/hello'))).toBe(false);
  });
});
