/**
 * The error codes the GPT library and `basalt disk` throw, besides the shared
 * ones of COMMON_ERRORS (E_EXISTS, E_READ_ONLY and the file-system codes).
 */
import { defineErrors } from '../errors.js';

export const GPT_ERRORS = defineErrors('gpt', {
  E_GPT_NOT_FOUND: { meaning: 'the disk holds no GPT partition table', hint: "create one with 'basalt disk create'" },
  E_GPT_CORRUPT: { meaning: 'both copies of the GPT are damaged', hint: 'the table cannot be repaired automatically' },
  E_GPT_TRUNCATED: { meaning: 'the GPT describes a larger disk than the image file', hint: 'the image was probably cut short; copy it again' },
  E_GPT_INVALID: { meaning: 'a partition table is inconsistent or does not fit the disk' },
  E_GPT_BAD_GUID: { meaning: 'a GUID is malformed', hint: 'write it as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx' },
  E_GPT_BAD_ATTR: { meaning: 'a slot attribute (priority, tries) is out of range' },
  E_GPT_NO_PARTITION: { meaning: 'no partition has the number or label given' },
  E_GPT_NOT_SLOT: { meaning: 'the partition is not a USR slot' },
  E_GPT_GROW: { meaning: 'the partition is not the last on the disk and cannot grow', hint: 'only the last partition on the disk can grow' },
  E_NOT_A_DISK: { meaning: 'the path is neither an image file nor a block device', hint: 'give a disk image file or a block device such as /dev/vda' },
  E_NOT_A_FILE: { meaning: 'the path of an image to create exists and is not a regular file', hint: 'disk create writes image files only' },
  E_NO_BOOTABLE_SLOT: { meaning: 'no USR slot is bootable', hint: "mark a slot good with 'basalt disk set IMAGE -i N --priority 1 --successful 1'" },
  E_LAYOUT_UNKNOWN: { meaning: 'no layout has the name given' },
  E_LAYOUT_INVALID: { meaning: 'a layout file is not valid' },
  E_DISK_SIZE: { meaning: 'the disk size asked for does not suit the layout' },
});
