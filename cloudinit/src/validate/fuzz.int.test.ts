/**
 * Fuzzing: 12,000 seeded random mutations of valid cloud-configs. Every
 * input must yield a validation report (never an exception), quickly; every
 * input whose report has no error must plan cleanly (actions, or a
 * BasaltError naming the problem). The seed is printed so a failure replays.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isBasaltError } from '../../../common/src/errors.js';
import { plan, type SystemView } from '../apply/plan.js';
import { corpusCases, corpusDir, loadExpected } from './corpus-files.js';
import { parseCloudConfigTyped, validateUserData } from './validate.js';

const N = 12_000;
const SEED = Number(process.env['BASALT_FUZZ_SEED'] ?? 20180409);

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TOKENS = [':', ': ', '- ', '-', ' ', '  ', '\t', '\n', '\r\n', '[', ']', '{', '}', ',', '"', "'", '&a ', '*a', '!!str ', '!!int ', '!!binary ', '|', '>', '#', '%', '? ', '0644', '0x1f', 'off', 'yes', '~', 'null', '.inf', '<<: ', '\\', '\u00e9', '\ufeff', '\x00', '99999999999999999999', 'base64', 'gz+b64', '/usr/x', 'command: ', 'units:', 'etcd2:', '$private_ipv4'];

function mutate(src: string, r: () => number): string {
  let s = src;
  const ops = 1 + Math.floor(r() * 4);
  for (let k = 0; k < ops; k++) {
    const pos = 14 + Math.floor(r() * Math.max(1, s.length - 14)); // usually keep the #cloud-config header
    const lines = s.split('\n');
    const li = Math.floor(r() * lines.length);
    switch (Math.floor(r() * 9)) {
      case 0:
        s = s.slice(0, pos) + TOKENS[Math.floor(r() * TOKENS.length)]! + s.slice(pos);
        break;
      case 1:
        s = s.slice(0, pos) + s.slice(pos + 1 + Math.floor(r() * 5));
        break;
      case 2:
        s = s.slice(0, pos) + String.fromCharCode(32 + Math.floor(r() * 95)) + s.slice(pos + 1);
        break;
      case 3:
        lines.splice(li, 0, lines[Math.floor(r() * lines.length)]!);
        s = lines.join('\n');
        break;
      case 4:
        if (li > 0) lines.splice(li, 1);
        s = lines.join('\n');
        break;
      case 5:
        lines[li] = (r() < 0.5 ? ' ' : '') + lines[li]!.replace(/^ /, r() < 0.5 ? '' : '   ');
        s = lines.join('\n');
        break;
      case 6: {
        const a = Math.floor(r() * lines.length);
        [lines[li], lines[a]] = [lines[a]!, lines[li]!];
        s = lines.join('\n');
        break;
      }
      case 7:
        s = s.replace(/: (\S+)/, (_m, v: string) => `: ${TOKENS[Math.floor(r() * TOKENS.length)]}${r() < 0.3 ? v : ''}`);
        break;
      default:
        if (r() < 0.05) s = s.slice(Math.floor(r() * 3));
        else s = s.slice(0, pos);
    }
  }
  return s;
}

const view: SystemView = {
  readFile: (p) => (p === '/usr/share/coreos/update.conf' ? Buffer.from('GROUP=stable\n') : null),
  userExists: (n) => n === 'core',
  hostname: () => 'fuzz',
  env: {},
};

describe('fuzz', () => {
  it(`${N} random mutations of valid configs: no crash, no hang, a report or a clean plan each (seed ${SEED})`, () => {
    const seeds = corpusCases()
      .filter((c) => loadExpected(c).exit === 0 && !c.startsWith('gzip'))
      .map((c) => readFileSync(join(corpusDir, c + '.yml'), 'utf8'))
      .filter((t) => t.startsWith('#cloud-config'));
    seeds.push(readFileSync(join(corpusDir, '..', 'apply', 'cluster.yml'), 'utf8'));
    seeds.push(readFileSync(join(corpusDir, 'valid-full.yml'), 'utf8'));
    expect(seeds.length).toBeGreaterThan(10);
    const r = rng(SEED);
    const stats = { reports: 0, withEntries: 0, yamlErrors: 0, plans: 0, refusals: 0, slowest: 0 };
    const failures: string[] = [];
    const started = Date.now();
    for (let i = 0; i < N; i++) {
      const input = mutate(seeds[Math.floor(r() * seeds.length)]!, r);
      const bytes = Buffer.from(input);
      const t0 = performance.now();
      try {
        const rep = validateUserData(bytes);
        stats.reports++;
        if (rep.entries.length > 0) stats.withEntries++;
        if (rep.entries.some((e) => e.code === 'E_YAML')) stats.yamlErrors++;
        if (!rep.entries.some((e) => e.kind === 'error') && rep.type === 'cloud-config') {
          const typed = parseCloudConfigTyped(bytes);
          if ('config' in typed) {
            try {
              plan(typed.config, null, {}, view, { sshKeyName: 'coreos-cloudinit', workspace: '/var/lib/coreos-cloudinit' });
              stats.plans++;
            } catch (e) {
              if (!isBasaltError(e)) throw e;
              stats.refusals++;
            }
          }
        }
      } catch (e) {
        failures.push(`#${i}: ${(e as Error).stack?.split('\n').slice(0, 3).join(' | ')}\n${JSON.stringify(input)}`);
      }
      const dt = performance.now() - t0;
      stats.slowest = Math.max(stats.slowest, dt);
      if (dt > 2000) failures.push(`#${i}: took ${dt.toFixed(0)} ms\n${JSON.stringify(input)}`);
      if (failures.length > 5) break;
    }
    const secs = (Date.now() - started) / 1000;
    console.log(`fuzz: ${N} inputs in ${secs.toFixed(1)} s, ${JSON.stringify({ ...stats, slowest: `${stats.slowest.toFixed(1)} ms` })}`);
    expect(failures).toEqual([]);
    expect(stats.reports).toBe(N);
    expect(stats.plans).toBeGreaterThan(100);
    expect(stats.yamlErrors).toBeGreaterThan(100);
  }, 170_000);
});
