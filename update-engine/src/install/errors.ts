/** The error codes of `basalt install`. */
import { defineErrors } from '../../../common/src/errors.js';

export const INSTALL_ERRORS = defineErrors('install', {
  E_INSTALL_TARGET_BUSY: { meaning: 'the target device is mounted or holds the running system', hint: 'unmount it, or choose another device' },
  E_INSTALL_TARGET: { meaning: 'the target is neither a block device nor a regular file (or is the image itself)', hint: 'give a block device (/dev/sdX, /dev/vdX, /dev/nvmeXnY) or an image file path' },
  E_INSTALL_VERIFY: { meaning: "the image's size or digest differs from its manifest.json", hint: 'download or build the image again; never install an image that fails its check' },
  E_INSTALL_MANIFEST: { meaning: 'manifest.json is missing, unreadable, or has no raw disk artifact for the image', hint: 'pass the manifest.json basalt build wrote beside the image with -m' },
  E_INSTALL_IMAGE: { meaning: 'the image lacks what the installer needs (EFI-SYSTEM with boot entries, OEM-CONFIG)' },
  E_INSTALL_CONFIG: { meaning: 'the cloud-config does not validate', hint: 'run coreos-cloudinit -validate -from-file FILE and fix what it reports' },
  E_INSTALL_PLATFORM: { meaning: 'the platform id (-o) is not one Basalt knows', hint: 'use one of qemu, metal, pxe, iso, aws, gce, azure, openstack, vmware, digitalocean' },
  E_INSTALL_SIGNATURE: { meaning: "the manifest's OpenPGP signature (MANIFEST.sig) is missing or does not verify with the keyring", hint: "sign it with 'basalt keys sign manifest.json --key release.key'; give the publisher's public keys with --keyring" },
  E_INSTALL_DOWNLOAD: { meaning: 'the image or its manifest could not be downloaded (HTTP error, network failure, or larger than its manifest says)', hint: 'check the URL (the image, with manifest.json and manifest.json.sig beside it) and the network' },
  E_INSTALL_TOO_SMALL: { meaning: 'the target device is smaller than the image', hint: 'choose a larger device' },
});
