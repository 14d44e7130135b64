/**
 * Apply of `!!binary` content (and the plain cases) into a temporary --root:
 * the files hold exactly the bytes v1.14.0 writes (DecodeContent on the
 * decoded bytes, no UTF-8 round trip). Needs no root: these configs only
 * write files.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateUserData } from '../validate/validate.js';
import { runApply } from './run.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'basalt-ci-binary-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

async function apply(doc: string): Promise<{ code: number; log: string[] }> {
  const userdata = Buffer.from('#cloud-config\n' + doc);
  const log: string[] = [];
  const code = await runApply({
    userdata,
    metadata: {},
    report: validateUserData(userdata),
    root,
    workspace: '/var/lib/coreos-cloudinit',
    sshKeyName: 'coreos-cloudinit',
    convertNetconf: '',
    ignoreFailure: false,
    failure: false,
    log: (l) => log.push(l),
    out: (t) => log.push(t),
    configRoot: '',
    env: {},
  });
  return { code, log };
}
const read = (p: string) => readFileSync(join(root, p));

function binary(b: Buffer, indent = '      '): string {
  const parts = b.toString('base64').match(/.{1,16}/g) ?? [''];
  return `!!binary |\n${parts.map((p) => indent + p).join('\n')}\n`;
}
const file = (encoding: string | null, content: string) => `write_files:\n  - path: /etc/x\n${encoding === null ? '' : `    encoding: ${encoding}\n`}    content: ${content}`;

/** Bytes that are not UTF-8: a UTF-8 round trip would change them. */
const payload = Buffer.concat([Buffer.from('motd\n'), Buffer.from([0x00, 0xff, 0x80, 0xfe, 0xc3, 0x28, 0x0a])]);

describe('apply --root: !!binary content', () => {
  it("CoreOS's documented gzip example writes the decompressed file (its bad trailer CRC is ignored, as by Go)", async () => {
    const r = await apply('write_files:\n  - path: /etc/motd\n    encoding: gzip\n    content: !!binary |\n      H4sIAAAAAAAA/8tIzcnJVyjPL8pJAQA6oR4NDAAAAA==\n');
    expect(r.code).toBe(0);
    expect(read('etc/motd').toString()).toBe('hello world');
  });

  it('gzip and gz: the decompressed bytes, exactly', async () => {
    for (const enc of ['gzip', 'gz']) {
      const r = await apply(file(enc, binary(gzipSync(payload))));
      expect(r.code, enc).toBe(0);
      expect(read('etc/x').equals(payload), enc).toBe(true);
    }
  });

  it('no encoding and encoding "": the decoded bytes as they are', async () => {
    for (const enc of [null, '""']) {
      const r = await apply(file(enc, binary(payload)));
      expect(r.code).toBe(0);
      expect(read('etc/x').equals(payload)).toBe(true);
    }
    await apply(file(null, binary(Buffer.from('héllo wörld\n'))));
    expect(read('etc/x').toString('utf8')).toBe('héllo wörld\n');
  });

  it('base64 and b64: the bytes are base64-decoded', async () => {
    for (const enc of ['base64', 'b64']) {
      const r = await apply(file(enc, binary(Buffer.from(payload.toString('base64')))));
      expect(r.code, enc).toBe(0);
      expect(read('etc/x').equals(payload), enc).toBe(true);
    }
  });

  it('gzip+base64, gz+base64, gzip+b64, gz+b64: base64, then gunzip', async () => {
    for (const enc of ['gzip+base64', 'gz+base64', 'gzip+b64', 'gz+b64']) {
      const r = await apply(file(enc, binary(Buffer.from(gzipSync(payload).toString('base64')))));
      expect(r.code, enc).toBe(0);
      expect(read('etc/x').equals(payload), enc).toBe(true);
    }
  });

  it('unit and drop-in contents are written byte for byte', async () => {
    const dropIn = Buffer.from('[Service]\nEnvironment=X=\xe9\n', 'latin1');
    const doc = `coreos:\n  units:\n    - name: b.service\n      content: ${binary(payload, '        ')}      drop_ins:\n        - name: 10-x.conf\n          content: ${binary(dropIn, '            ')}`;
    const r = await apply(doc);
    expect(r.code).toBe(0);
    expect(read('etc/systemd/system/b.service').equals(payload)).toBe(true);
    expect(read('etc/systemd/system/b.service.d/10-x.conf').equals(dropIn)).toBe(true);
  });

  it('a second apply changes nothing', async () => {
    await apply(file('gzip', binary(gzipSync(payload))));
    const r = await apply(file('gzip', binary(gzipSync(payload))));
    // the file, and the "unmask" of the generated etcd (etcd2 section), fleet and locksmithd units
    expect(r.log).toContain('Applied: 0 change(s), 4 unchanged or skipped');
  });

  it('invalid base64 in a !!binary value: refused, nothing written', async () => {
    const r = await apply(file('gzip', '!!binary |\n      H4sI*not base64*\n'));
    expect(r.code).toBe(1);
    expect(r.log.join('\n')).toMatch(/Refusing to apply user-data with 1 validation error/);
    expect(existsSync(join(root, 'etc'))).toBe(false);
  });

  it('!!binary bytes that are not gzip under encoding: gzip: refused, nothing written', async () => {
    const r = await apply(file('gzip', binary(payload)));
    expect(r.code).toBe(1);
    expect(existsSync(join(root, 'etc'))).toBe(false);
  });
});

describe('apply --root: plain content, unchanged', () => {
  it('text, base64 and gzip+base64 text are written; text under gzip is refused', async () => {
    expect((await apply(file(null, '|\n      hello\n'))).code).toBe(0);
    expect(read('etc/x').toString()).toBe('hello\n');
    expect((await apply(file('b64', 'aGVsbG8=\n'))).code).toBe(0);
    expect(read('etc/x').toString()).toBe('hello');
    expect((await apply(file('gz+b64', `${gzipSync(Buffer.from('héllo')).toString('base64')}\n`))).code).toBe(0);
    expect(read('etc/x').toString()).toBe('héllo');
    rmSync(join(root, 'etc'), { recursive: true });
    expect((await apply(file('gzip', 'hello\n'))).code).toBe(1);
    expect(existsSync(join(root, 'etc'))).toBe(false);
  });
});
