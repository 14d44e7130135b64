/** GPT and A/B slots: the public API of the GPT library. */
export { GPT_ERRORS } from './errors.js';
export * from './types.js';
export { normGuid, randomGuid, derivedGuid, isGuid } from './guid.js';
export { validateGpt, encodeGpt } from './codec.js';
export { decodeSlotAttrs, encodeSlotAttrs, slotAttrs, setSlotAttrs, prioritize, selectNext, findPartition, isUsrSlot, type NextChoice } from './slots.js';
export { loadLayout, parseLayout, planLayout, type Layout, type LayoutPartition, type PlanOptions } from './layout.js';
export { readGpt, writeGpt, createDisk, repairGpt, growPartition, partitionRange, type CreateOptions } from './io.js';
