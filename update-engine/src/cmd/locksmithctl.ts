/** locksmithctl with CoreOS's subcommands: status, lock [id], unlock [id], set-max N. */
import { readFile } from 'node:fs/promises';
import { BasaltError } from '../../../common/src/errors.js';
import { requireActionRights } from '../control.js';
import { EtcdKv, RebootLock } from '../locksmith.js';

const USAGE = `Usage: locksmithctl [-endpoint URL] [-group NAME] status|lock [id]|unlock [id]|set-max N
`;

export async function main(argv: string[], io: { out(t: string): void; err(t: string): void }): Promise<number> {
  const endpoints: string[] = [];
  let group: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--?(endpoint|group)(?:=(.*))?$/.exec(a);
    if (m) {
      const v = m[2] ?? argv[++i];
      if (v === undefined) {
        io.err(`locksmithctl: -${m[1]} needs a value\n${USAGE}`);
        return 2;
      }
      if (m[1] === 'endpoint') endpoints.push(...v.split(','));
      else group = v;
    } else if (a === '-h' || a === '--help' || a === 'help') {
      io.out(USAGE);
      return 0;
    } else rest.push(a);
  }
  const lock = new RebootLock(new EtcdKv(endpoints.length ? endpoints : ['http://127.0.0.1:2379', 'http://127.0.0.1:4001']), group);
  const machineId = async () => (await readFile('/etc/machine-id', 'utf8').catch(() => '')).trim() || (() => {
    throw new BasaltError('E_NO_MACHINE_ID', '/etc/machine-id is missing', { hint: 'pass the id: locksmithctl lock ID' });
  })();
  const [cmd, arg] = rest;
  if (cmd === 'lock' || cmd === 'unlock' || cmd === 'set-max') await requireActionRights(`locksmithctl ${cmd}`);
  switch (cmd) {
    case 'status': {
      const { sem } = await lock.get();
      io.out(`Available: ${sem.semaphore}\nMax: ${sem.max}\n`);
      if (sem.holders?.length) io.out(`\nMACHINE ID\n${sem.holders.join('\n')}\n`);
      return 0;
    }
    case 'lock':
      await lock.lock(arg ?? (await machineId()));
      return 0;
    case 'unlock':
      await lock.unlock(arg ?? (await machineId()));
      return 0;
    case 'set-max': {
      if (!arg || !/^\d+$/.test(arg)) {
        io.err(`locksmithctl: set-max needs a number\n${USAGE}`);
        return 2;
      }
      const { sem } = await lock.get();
      const next = await lock.setMax(Number(arg));
      io.out(`Old: ${sem.max}\nNew: ${next.max}\n`);
      return 0;
    }
    default:
      io.err(USAGE);
      return 2;
  }
}
