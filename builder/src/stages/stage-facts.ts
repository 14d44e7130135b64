/**
 * What each stage reports (its result.json), by stage: types only, shared by
 * the build context and the stages that write and read them.
 */

/** What the packages stage reports. */
export interface PackagesFacts {
  count: number;
  /** `name version` of the kernel package, null when none is installed. */
  kernelPackage: string | null;
}

/** What the customize stage reports. */
export interface CustomizeFacts {
  nodeRuntimeBytes: number;
  packageManagerBytesRemoved: number;
  purged: string[];
}

/** Files and bytes removed, by what they were (docs, locales, kernel modules, profile). */
export type Removed = Record<string, { files: number; bytes: number }>;

/** What the trim stage reports. */
export interface TrimFacts {
  removed: Removed;
  modulesKept: number;
  modulesMissing: string[];
}

/** What the initrd stage reports. */
export interface InitrdFacts {
  kernelVersion: string;
  kernelBytes: number;
  initrdBytes: number;
}

/** What the layer stage reports: how many of the profile's files, overlays and units it put in. */
export interface LayerFacts {
  files: number;
  overlays: number;
  units: number;
}

/** What the boot stage reports. */
export interface BootFacts {
  /** File name of slot A's boot entry (with its tries counter). */
  entry: string;
  /** The kernel command line of the entry. */
  cmdline: string;
}
