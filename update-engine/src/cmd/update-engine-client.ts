/**
 * update_engine_client with CoreOS's flags, over the update-engine socket:
 *   -check_for_update   start a check (and the update it finds)
 *   -status             print LAST_CHECKED_TIME= PROGRESS= CURRENT_OP= NEW_VERSION= NEW_SIZE=
 *   -update             check, then follow until IDLE or UPDATED_NEED_REBOOT (exit 0), or an error
 *   -watch_for_updates  print the status on every change
 *   -reset_status       leave UPDATED_NEED_REBOOT: the new slot is not booted
 */
import { BasaltError } from '../../../common/src/errors.js';
import { DEFAULT_SOCKET, request, statusLines } from '../host/control.js';
import type { Status } from '../host/engine.js';
import { UE_ERRORS } from '../errors.js';

const USAGE = `Usage: update_engine_client [-check_for_update] [-status] [-update] [-watch_for_updates] [-reset_status] [-socket=PATH]
`;

export async function main(argv: string[], io: { out(t: string): void; err(t: string): void }): Promise<number> {
  const flags = new Set<string>();
  let sock = process.env['BASALT_UPDATE_SOCKET'] ?? DEFAULT_SOCKET;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!.replace(/^--?/, '');
    if (a.startsWith('socket=')) sock = a.slice(7);
    else if (a === 'socket') sock = argv[++i] ?? sock;
    else if (['check_for_update', 'status', 'update', 'watch_for_updates', 'reset_status', 'help', 'h'].includes(a)) flags.add(a);
    else {
      io.err(`update_engine_client: unknown flag ${argv[i]}\n${USAGE}`);
      return 2;
    }
  }
  if (flags.size === 0 || flags.has('help') || flags.has('h')) {
    io.out(USAGE);
    return flags.size === 0 ? 2 : 0;
  }
  if (flags.has('reset_status')) {
    const r = await request(sock, 'reset');
    if (r['accepted'] === false) throw new BasaltError(UE_ERRORS.E_NOT_PENDING, 'ResetStatus: no update is waiting for a reboot (only UPDATED_NEED_REBOOT can be reset)');
    io.out('Status reset: the new slot will not be booted.\n');
  }
  if (flags.has('check_for_update') || flags.has('update')) {
    const r = await request(sock, 'check');
    io.out(r['accepted'] ? 'Initiating update check and install.\n' : `Not starting a check: ${(r['status'] as Status).status}\n`);
  }
  if (flags.has('update')) {
    let seenBusy = false;
    let last: Status | undefined;
    await request(sock, 'watch', (o) => {
      last = o['status'] as Status;
      if (last.status !== 'UPDATE_STATUS_IDLE') seenBusy = true;
      if (last.status === 'UPDATE_STATUS_DOWNLOADING') io.out(`Update progress: ${last.progress}\n`);
      return !(last.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT' || (seenBusy && last.status === 'UPDATE_STATUS_IDLE'));
    });
    if (last?.lastError && last.status !== 'UPDATE_STATUS_UPDATED_NEED_REBOOT') {
      throw new BasaltError(last.lastError.code, `Update failed: ${last.lastError.message}`);
    }
    io.out(last?.status === 'UPDATE_STATUS_UPDATED_NEED_REBOOT' ? 'Update succeeded -- reboot needed.\n' : 'No update available.\n');
  }
  if (flags.has('status')) {
    const r = await request(sock, 'status');
    io.out(statusLines(r['status'] as Status));
  }
  if (flags.has('watch_for_updates')) {
    await request(sock, 'watch', (o) => {
      io.out(statusLines(o['status'] as Status));
      return true;
    });
  }
  return 0;
}
