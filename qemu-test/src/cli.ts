/**
 * `basalt qemu run IMAGE`: start a built image for a person to use, with the
 * serial console on the terminal, as coreos_production_qemu.sh did.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, intOpt } from '../../common/src/cli/args.js';
import type { CommandContext } from '../../common/src/cli/types.js';
import { UsageError, fsError } from '../../common/src/errors.js';
import { run as exec } from '../../common/src/exec.js';
import { chooseAccelWithReason, type Accel } from './accel.js';
import { makeConfigDrive } from './configdrive.js';
import { OVMF_VARS, requireFirmware } from './firmware.js';
import { qemuArgs } from './vm.js';

export const help = `Usage: basalt qemu run IMAGE [options]

Boot a Basalt disk image (raw or qcow2) in QEMU with UEFI firmware, the serial
console on this terminal (Ctrl-A X quits), and SSH forwarded from the host.

Options:
  --cloud-config FILE   attach a config drive (config-2) carrying FILE as user data
  --memory MIB          guest memory in MiB (default 2048)
  --cpus N              virtual CPUs (default 2)
  --ssh-port PORT       host port forwarded to the guest's port 22 (default 2222)
  --snapshot            do not write to IMAGE (changes go to a temporary overlay)
  --kernel FILE --initrd FILE [--append ARGS]
                        boot a kernel directly (the PXE artifacts), no disk needed
  --dry-run             print the QEMU command line and exit

KVM is used only when a probe shows that it works; otherwise TCG (slow).
`;

/** `qemu run`'s request, checked: the files exist, the numbers are in range. */
interface RunRequest {
  image: string | undefined;
  kernel: string | undefined;
  initrd: string | undefined;
  append: string | undefined;
  cloudConfig: string | undefined;
  memoryMiB: number;
  cpus: number;
  sshPort: number;
  snapshot: boolean;
  dryRun: boolean;
}

function parseRun(args: string[]): RunRequest {
  const { values, positionals } = parse(
    args,
    {
      'cloud-config': { type: 'string' },
      memory: { type: 'string', short: 'm' },
      cpus: { type: 'string' },
      'ssh-port': { type: 'string' },
      snapshot: { type: 'boolean' },
      kernel: { type: 'string' },
      initrd: { type: 'string' },
      append: { type: 'string' },
      'dry-run': { type: 'boolean' },
    },
    'qemu run',
  );
  const image = positionals[0];
  if (!image && !values.kernel) throw new UsageError('qemu run: missing IMAGE', "see 'basalt qemu --help'");
  if (positionals.length > 1) throw new UsageError(`qemu run: unexpected argument '${positionals[1]}'`);
  if (image && !existsSync(image)) throw fsError(Object.assign(new Error('missing'), { code: 'ENOENT' }), image, 'open image');
  for (const f of [values.kernel, values.initrd, values['cloud-config']]) {
    if (f && !existsSync(f)) throw fsError(Object.assign(new Error('missing'), { code: 'ENOENT' }), f, 'open');
  }
  return {
    image,
    kernel: values.kernel,
    initrd: values.initrd,
    append: values.append,
    cloudConfig: values['cloud-config'],
    memoryMiB: intOpt(values.memory, 'memory', 256, 1024 * 1024) ?? 2048,
    cpus: intOpt(values.cpus, 'cpus', 1, 64) ?? 2,
    sshPort: intOpt(values['ssh-port'], 'ssh-port', 1, 65535) ?? 2222,
    snapshot: values.snapshot ?? false,
    dryRun: values['dry-run'] ?? false,
  };
}

/** Fills `work` (firmware variables, the overlay of --snapshot, the config drive) and returns QEMU's command line. */
async function prepare(req: RunRequest, work: string): Promise<{ accel: Accel; reason: string; args: string[] }> {
  const varsPath = join(work, 'OVMF_VARS.fd');
  await copyFile(requireFirmware(OVMF_VARS, 'OVMF variable store'), varsPath);
  let disk = req.image ? resolve(req.image) : undefined;
  if (disk && req.snapshot) {
    const overlay = join(work, 'overlay.qcow2');
    await exec('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', disk.endsWith('.qcow2') ? 'qcow2' : 'raw', '-b', disk, overlay]);
    disk = overlay;
  }
  let configDrive: string | undefined;
  if (req.cloudConfig) {
    await mkdir(work, { recursive: true });
    configDrive = await makeConfigDrive(join(work, 'config-2.iso'), await readFile(req.cloudConfig));
  }
  const { accel, reason } = await chooseAccelWithReason();
  const args = qemuArgs({
    workdir: work,
    accel,
    disk,
    varsPath,
    interactive: true,
    memoryMiB: req.memoryMiB,
    cpus: req.cpus,
    configDrive,
    kernel: req.kernel,
    initrd: req.initrd,
    append: req.append,
    hostfwd: [{ host: req.sshPort, guest: 22 }],
  });
  return { accel, reason, args };
}

/** Runs QEMU on this terminal until it exits; 0 when it exited cleanly and no signal stopped it. */
async function runInteractive(args: string[]): Promise<number> {
  // Ctrl-C reaches the guest (the terminal is raw); a SIGTERM or SIGHUP sent to basalt stops QEMU too.
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const signals = ['SIGTERM', 'SIGHUP', 'SIGINT'] as const;
  for (const s of signals) process.on(s, onSignal);
  try {
    const r = await exec('qemu-system-x86_64', args, { inherit: true, reject: false, signal: stop.signal });
    return r.exitCode === 0 && !stop.signal.aborted ? 0 : 1;
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
}

export async function run(ctx: CommandContext): Promise<number> {
  const [sub, ...rest] = ctx.args;
  if (sub !== 'run') throw new UsageError(sub ? `qemu: unknown subcommand '${sub}'` : 'qemu: missing subcommand', "see 'basalt qemu --help'");
  const req = parseRun(rest);
  const work = await mkdtemp(join(tmpdir(), 'basalt-qemu-'));
  try {
    const { accel, reason, args } = await prepare(req, work);
    if (req.dryRun) {
      ctx.out(ctx.json ? JSON.stringify({ accel, reason, argv: ['qemu-system-x86_64', ...args] }) + '\n' : `qemu-system-x86_64 ${args.join(' ')}\n`);
      return 0;
    }
    process.stderr.write(`basalt: booting ${req.image ?? req.kernel} with ${accel.toUpperCase()} (${reason}); ssh -p ${req.sshPort} core@127.0.0.1; quit with Ctrl-A X\n`);
    return await runInteractive(args);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
