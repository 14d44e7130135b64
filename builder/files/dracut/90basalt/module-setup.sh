#!/bin/bash
# Basalt initrd module: opens /usr with dm-verity (hash tree appended to the
# filesystem, read at --hash-offset), prepares an empty ROOT (or a tmpfs root)
# from /usr, and reboots instead of looping in emergency mode so that the
# bootloader's boot counting can move on to the other slot.

check() { return 0; }

depends() { echo systemd dm; }

installkernel() { hostonly='' instmods dm_verity dm_mod loop squashfs erofs; }

install() {
    inst_multiple veritysetup udevadm cp mkdir systemd-tmpfiles losetup dd
    inst_script "$moddir/basalt-verity-open" /usr/lib/basalt/basalt-verity-open
    inst_simple "$moddir/basalt-root.conf" /usr/lib/basalt/basalt-root.conf
    local u
    for u in basalt-verity.service basalt-root-setup.service basalt-emergency-reboot.service; do
        inst_simple "$moddir/$u" "$systemdsystemunitdir/$u"
    done
    mkdir -p "$initdir$systemdsystemunitdir/initrd.target.wants" "$initdir$systemdsystemunitdir/emergency.target.wants" "$initdir$systemdsystemunitdir/emergency.service.d"
    ln_r "$systemdsystemunitdir/basalt-verity.service" "$systemdsystemunitdir/initrd.target.wants/basalt-verity.service"
    ln_r "$systemdsystemunitdir/basalt-root-setup.service" "$systemdsystemunitdir/initrd.target.wants/basalt-root-setup.service"
    ln_r "$systemdsystemunitdir/basalt-emergency-reboot.service" "$systemdsystemunitdir/emergency.target.wants/basalt-emergency-reboot.service"
    inst_simple "$moddir/emergency-simple.conf" "$systemdsystemunitdir/emergency.service.d/basalt.conf"
}
