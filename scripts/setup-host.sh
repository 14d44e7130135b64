#!/usr/bin/env bash
# Installs the Debian 12 host tools Basalt needs to build images and run its
# tests (as root; a no-op when everything is already installed).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# host tools (one line; every part adds the Debian packages it needs here)
PACKAGES="binutils fdisk gdisk cgpt mtools dosfstools e2fsprogs erofs-utils squashfs-tools cryptsetup-bin xz-utils genisoimage xorriso etcd-server etcd-client gnupg qemu-system-x86 qemu-utils ovmf mmdebstrap systemd-container uidmap openssh-client busybox-static zstd dpkg-dev xdelta3 casync postgresql chromium"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "host tools: all installed"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "host tools missing:$missing" >&2
  echo "run as root: apt-get install -y$missing" >&2
  exit 1
fi
echo "host tools: installing$missing"
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
