/**
 * Validation throughput of Basalt's coreos-cloudinit -validate, printed beside
 * the bare process start-up time measured in the same run:
 *   - `node -e 0` start-up (median of 10),
 *   - `node bin/coreos-cloudinit.js -validate -from-file` per file (median of 10),
 *   - in-process files/s over the golden corpus,
 *   - in-process MB/s on a generated ~1 MB cloud-config.
 * Run: npm run bench:cloudinit (tsc first). Side effects: spawns node processes.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { corpusCases, corpusDir } from '../cloudinit/src/validate/corpus-files.js';
import { decompressIfGzip, validateUserData } from '../cloudinit/src/validate/validate.js';

const repo = join(import.meta.dirname, '..', '..');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function timeSpawn(args: string[], n = 10): number {
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    try {
      execFileSync(process.execPath, args, { stdio: 'ignore' });
    } catch {
      /* exit 1 is expected for files with entries */
    }
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

function bigConfig(targetBytes: number): Buffer {
  const parts = ['#cloud-config\nhostname: bench\nwrite_files:\n'];
  let size = parts[0]!.length;
  for (let i = 0; size < targetBytes; i++) {
    const item = `  - path: /etc/bench/file-${i}.conf\n    permissions: '0644'\n    owner: root:root\n    content: |\n      [Section]\n      key-${i}=value ${i} with some text to make it longer\n      other: not a key\n`;
    parts.push(item);
    size += item.length;
  }
  parts.push('coreos:\n  units:\n    - name: bench.service\n      command: start\n');
  return Buffer.from(parts.join(''));
}

const startup = timeSpawn(['-e', '0']);
const cases = corpusCases().map((c) => new Uint8Array(readFileSync(join(corpusDir, c + '.yml'))));
const oneFile = join(corpusDir, 'valid-full.yml');
const perProcess = timeSpawn([join(repo, 'bin', 'coreos-cloudinit.js'), '-validate', '-from-file', oneFile]);

// in-process corpus throughput (warm-up first)
for (const c of cases) validateUserData(decompressIfGzip(c).data);
let files = 0;
let t0 = performance.now();
while (performance.now() - t0 < 2000) {
  for (const c of cases) {
    validateUserData(decompressIfGzip(c).data);
    files++;
  }
}
const filesPerSec = files / ((performance.now() - t0) / 1000);

const big = bigConfig(1024 * 1024);
validateUserData(big);
let bytes = 0;
let runs = 0;
t0 = performance.now();
while (performance.now() - t0 < 3000 || runs < 3) {
  const r = validateUserData(big);
  if (r.entries.length !== 0) throw new Error('the 1 MB config should be valid');
  bytes += big.length;
  runs++;
}
const mbPerSec = bytes / (1024 * 1024) / ((performance.now() - t0) / 1000);

console.log(`cloudinit validate bench (node ${process.version}, ${cases.length} corpus files)`);
console.log(`  bare process start-up (node -e 0):                 ${startup.toFixed(1)} ms`);
console.log(`  coreos-cloudinit -validate -from-file (1 process):  ${perProcess.toFixed(1)} ms  (${(perProcess - startup).toFixed(1)} ms above start-up)`);
console.log(`  in-process, golden corpus:                         ${filesPerSec.toFixed(0)} files/s`);
console.log(`  in-process, ${(big.length / 1024 / 1024).toFixed(2)} MB config (${runs} runs):         ${mbPerSec.toFixed(2)} MB/s`);
