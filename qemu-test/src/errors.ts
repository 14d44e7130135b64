/** The error codes the QEMU test driver throws. */
import { defineErrors } from '../../common/src/errors.js';

export const QEMU_ERRORS = defineErrors('qemu-test', {
  E_QMP: { meaning: "QEMU's QMP socket failed, refused a command or is not connected" },
  E_VM_RUNNING: { meaning: 'the VM was started while it was already running' },
  E_VM_START: { meaning: 'QEMU exited while starting' },
  E_VM_STOPPED: { meaning: 'QEMU exited while a test was waiting for the guest' },
  E_VM_TIMEOUT: { meaning: 'the guest did not print what a test waited for, or QEMU did not exit, in time' },
  E_VM_FIRMWARE: { meaning: 'the UEFI firmware (OVMF) is not installed', hint: 'apt-get install ovmf' },
});
