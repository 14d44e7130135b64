/** Well-known partition type GUIDs (lower case), as cgpt/seismograph name them. */
export const TYPE = {
  efi: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b',
  'bios-boot': '21686148-6449-6e6f-744e-656564454649',
  'coreos-usr': '5dfbf5f4-2848-4bac-aa5e-0d9a20b745a6',
  'coreos-resize': '3884dd41-8582-4404-b9a8-e9b84f2df50e',
  'coreos-reserved': 'c95dc21a-df0e-4340-8d7b-26cbfa9a03e0',
  'linux-data': '0fc63daf-8483-4772-8e79-3d69d8477de4',
  'coreos-root': '9315b5de-9a6c-4e60-a78c-66eb71b8e1bd',
} as const;

/** The USR slot type: only partitions of this type take part in gptprio. */
export const USR_TYPE = TYPE['coreos-usr'];

export interface Partition {
  /** 1-based partition number (entry index + 1). */
  index: number;
  /** Partition type GUID, lower case. */
  type: string;
  /** Unique partition GUID (PARTUUID), lower case. */
  guid: string;
  firstLba: bigint;
  lastLba: bigint;
  /** The whole 64-bit attribute word. */
  attributes: bigint;
  /** Partition name (PARTLABEL), up to 36 UTF-16 code units. */
  label: string;
}

export interface GptStatus {
  primaryOk: boolean;
  backupOk: boolean;
  /** Human-readable problems found while reading (empty when healthy). */
  problems: string[];
}

export interface Gpt {
  sectorSize: number;
  /** Size of the disk in sectors at the time it was read. */
  totalSectors: bigint;
  diskGuid: string;
  firstUsableLba: bigint;
  lastUsableLba: bigint;
  /** LBA of the primary partition entry array (2 on a normal disk). */
  primaryEntriesLba: bigint;
  /** LBA of the backup header (the last sector on a normal disk). */
  backupHeaderLba: bigint;
  entryCount: number;
  entrySize: number;
  /** Used entries only, ordered by index. */
  partitions: Partition[];
  /** How the on-disk copies looked when read (absent for a freshly planned table). */
  status?: GptStatus;
}

export interface SlotAttrs {
  priority: number;
  tries: number;
  successful: boolean;
}
