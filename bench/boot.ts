/**
 * Boot time of a built image under QEMU (TCG here), as an operator boots it:
 * the raw disk of out/ through a fresh overlay (so every boot is a first boot:
 * ROOT grows, host keys are made, the cloud-config is applied) with a config
 * drive that gives core an SSH key. For each boot it prints, from QEMU's start:
 *   - the initrd starting its switch-root (initrd-switch-root.service on the console): the time the
 *     image's firmware, kernel and initrd take, the baseline of the same boot;
 *   - basalt-ready (the health gate passed, the slot marked good);
 * then the median of both over the boots, and for the last boot
 * `systemd-analyze`, `systemd-analyze critical-chain basalt-ready.service`
 * and the slowest units (`systemd-analyze blame`), read over SSH as core;
 * and, inside the last guest as core, `coreos-cloudinit -validate` of an empty
 * file (median of 5 runs, after one that fills core's compile cache) beside
 * the image's bare `node -e 0` (median of 5) in the same guest.
 *
 * Run: npm run bench:boot [-- --image out/basalt_production_image.bin] [--boots 3]
 * Needs root (QEMU, the config drive), qemu-system-x86 and ovmf.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Vm } from '../qemu-test/src/vm.js';
import { makeConfigDrive } from '../qemu-test/src/configdrive.js';
import { Ssh } from '../qemu-test/tests/fleet.js';
import { freePort } from '../common/test/helpers.js';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Runs in the guest as core: median wall time of 5 runs (ms) of a command, printed beside node's bare start-up. */
const GUEST_STARTUP = [
  'touch /tmp/empty',
  'ms() { s=$(date +%s%N); "$@" >/dev/null 2>&1; echo $(( ($(date +%s%N) - s) / 1000000 )); }',
  'med() { for i in 1 2 3 4 5; do ms "$@"; done | sort -n | sed -n 3p; }',
  'coreos-cloudinit -validate -from-file /tmp/empty >/dev/null 2>&1',
  'echo "in the guest (median of 5): coreos-cloudinit -validate of an empty file $(med coreos-cloudinit -validate -from-file /tmp/empty) ms; node -e 0 $(med /usr/lib/basalt/node/bin/node -e 0) ms"',
].join('\n');

const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { image: { type: 'string', default: 'out/basalt_production_image.bin' }, boots: { type: 'string', default: '3' } }, strict: true });
  const boots = Number(values.boots);
  if (!Number.isInteger(boots) || boots < 1 || boots > 20) {
    process.stderr.write(`bench:boot: --boots '${values.boots}' must be an integer from 1 to 20\n`);
    return 1;
  }
  const image = resolve(values.image);
  const work = await mkdtemp(join(tmpdir(), 'basalt-bench-boot-'));
  const rows: { switchRoot: number; ready: number }[] = [];
  let analyze = '';
  try {
    const key = await Ssh.keypair(work);
    const cd = await makeConfigDrive(join(work, 'config-2.iso'), `#cloud-config\nssh_authorized_keys:\n  - ${key.pub}\n`);
    for (let i = 0; i < boots; i++) {
      const port = await freePort();
      const vm = new Vm({ workdir: join(work, `vm-${i}`), disk: image, configDrive: cd, hostfwd: [{ host: port, guest: 22 }] });
      try {
        await vm.start();
        const sw = await vm.waitFor(/initrd-switch-root\.service\S* - Switch Root\.\.\./, 10 * 60_000, { what: "the initrd's switch-root" });
        const ready = await vm.waitFor(/basalt-ready slot=\S+ version=\S+\r?\n/, 10 * 60_000, { what: 'basalt-ready' });
        rows.push({ switchRoot: sw.atMs, ready: ready.atMs });
        process.stdout.write(`boot ${i + 1}: switch-root ${sec(sw.atMs)}, basalt-ready ${sec(ready.atMs)} after QEMU started (accel ${vm.accel})\n`);
        if (i === boots - 1) {
          const ssh = new Ssh(port, key.key);
          await ssh.waitUp(3 * 60_000, 'core');
          analyze = await ssh.exec('systemd-analyze; echo; systemd-analyze critical-chain basalt-ready.service; echo; echo "slowest units:"; systemd-analyze blame | grep -v "\\.device$" | head -n 12', 'core', 2 * 60_000);
          analyze += '\n' + (await ssh.exec(GUEST_STARTUP, 'core', 5 * 60_000));
        }
      } finally {
        await vm.dispose();
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const sw = median(rows.map((r) => r.switchRoot));
  const ready = median(rows.map((r) => r.ready));
  process.stdout.write(`\nmedian of ${boots} boots: firmware+kernel+initrd to switch-root ${sec(sw)}; to basalt-ready ${sec(ready)} (userspace ${sec(ready - sw)}, ${(ready / sw).toFixed(2)}x the switch-root time)\n\n${analyze}`);
  return 0;
}

main().then(
  (c) => (process.exitCode = c),
  (e: unknown) => {
    process.stderr.write(`bench:boot: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);
