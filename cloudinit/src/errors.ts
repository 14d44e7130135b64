/**
 * The error codes cloudinit throws (apply and the datasources). The report
 * lines of `validate` (E_YAML, E_INVALID_VALUE, ...) are v1.14.0's output, not
 * BasaltErrors, and are not listed here.
 */
import { CONF_FILES } from '../../common/src/contracts.js';
import { defineErrors } from '../../common/src/errors.js';

export const CLOUDINIT_ERRORS = defineErrors('cloudinit', {
  // The planner: what aborts v1.14.0's Apply.
  E_PERMISSIONS: { meaning: 'write_files permissions are not an octal number', hint: "use an octal mode such as '0644'" },
  E_CONTENT_ENCODING: { meaning: 'write_files content cannot be decoded with its encoding', hint: 'fix the encoding or the content' },
  E_UPDATE_OPTION: { meaning: 'coreos.update has an invalid value', hint: 'reboot_strategy must be etcd-lock, reboot or off' },
  E_UPDATE_CONF: { meaning: 'the target has no update.conf for coreos.update to rewrite', hint: `the target needs ${CONF_FILES.join(' or ')}` },
  E_MANAGE_ETC_HOSTS: { meaning: 'manage_etc_hosts has a value other than "localhost"', hint: 'the only supported value is "localhost"' },
  // The applier.
  E_PATH_ESCAPES_ROOT: { meaning: 'a path of the config leads outside the target root' },
  E_NOT_DIR: { meaning: 'the folder of a file to write exists and is not a directory' },
  E_OWNER: { meaning: "write_files owner names a user or group the target's passwd or group file does not have" },
  E_NO_USER: { meaning: "SSH keys are for a user the target's passwd file does not have" },
  E_UNIT_ENABLE: { meaning: 'systemctl could not enable a unit under another root', hint: 'the unit needs an [Install] section' },
  // The config drive datasource.
  E_CONFIGDRIVE_LABEL: { meaning: 'a config drive image is not labelled config-2' },
  E_CONFIGDRIVE_IMAGE: { meaning: 'a config drive image is neither vfat nor iso9660', hint: 'pass a config drive directory or an image labelled config-2' },
});
