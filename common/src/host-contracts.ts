/**
 * Names shared by the image the builder makes and the tools that run on it
 * (one definition each): the update-engine's sockets and the group that may
 * run update actions without root.
 */

/** Members of this group (core is one) may run update actions and reboot-lock changes without root. */
export const UPDATE_GROUP = 'basalt-update';

/** The update-engine's action socket: check, reset, rollback, mark-good (root and UPDATE_GROUP, mode 0660). */
export const UPDATE_SOCKET = '/run/basalt/update-engine.sock';

/** The update-engine's read-only socket: status and watch, for every local user (mode 0666). */
export const UPDATE_STATUS_SOCKET = '/run/basalt/update-engine-status.sock';

/**
 * The services a cloud-config configures, which must start from the configured state on the
 * first boot: the cloud-config units are ordered Before= each of them (builder/files), and
 * etcd is not started by any target until a cloud-config starts it.
 */
export const CONFIGURED_SERVICES = ['etcd.service', 'docker.service', 'containerd.service', 'locksmithd.service', 'update-engine.service'];

/** The units that apply a cloud-config at boot, one per datasource. */
export const CLOUDINIT_UNITS = ['basalt-cloudinit-configdrive.service', 'basalt-cloudinit-cmdline.service'];
