/** The shipped disk layouts name their USR slots as the contracts do (the builder and the update-engine find them by label). */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SLOT_NAMES, SLOT_PARTLABEL } from '../../common/src/contracts.js';
import { loadLayout } from '../../common/src/gpt/index.js';
import { configsDir } from '../../common/src/paths.js';

const layouts = readdirSync(join(configsDir(), 'layouts'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.replace(/\.json$/, ''));

describe('disk layouts', () => {
  it.each(layouts)('%s: one slot partition per USR slot, labelled as SLOT_PARTLABEL', (name) => {
    const slots = loadLayout(name).partitions.filter((p) => p.slot !== undefined);
    expect(slots.map((p) => p.label).sort()).toEqual(SLOT_NAMES.map((s) => SLOT_PARTLABEL[s]).sort());
  });
});
