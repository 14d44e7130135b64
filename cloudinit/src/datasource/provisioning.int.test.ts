/**
 * Azure's provisioning medium read as at a first boot: a real ISO 9660 image
 * (genisoimage) holding ovf-env.xml, mounted read-only through a loop device
 * (root only), copied out and unmounted; the custom data then decoded by the
 * azure datasource's parser.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseOvfCustomData } from './azure.js';
import { readProvisioningMedium } from './provisioning.js';

const isRoot = process.getuid?.() === 0;
// The kernel must mount ISO 9660 or UDF (a container's kernel may have neither, and no modules to load).
const mountable = /\t(iso9660|udf)\n/.test(readFileSync('/proc/filesystems', 'utf8'));
const dir = mkdtempSync(join(tmpdir(), 'basalt-provisioning-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CONFIG = '#cloud-config\nhostname: from-custom-data\n';
const OVF = `<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns:wa="http://schemas.microsoft.com/windowsazure">
  <wa:ProvisioningSection><wa:Version>1.0</wa:Version>
    <LinuxProvisioningConfigurationSet xmlns="http://schemas.microsoft.com/windowsazure">
      <ConfigurationSetType>LinuxProvisioningConfiguration</ConfigurationSetType>
      <HostName>vm-1</HostName><UserName>azureuser</UserName>
      <CustomData>${Buffer.from(CONFIG).toString('base64')}</CustomData>
    </LinuxProvisioningConfigurationSet>
  </wa:ProvisioningSection>
</Environment>
`;

describe.skipIf(!isRoot || !mountable)('the provisioning medium (skipped unless root, with a kernel that mounts iso9660 or udf: it mounts a loop device)', () => {
  it('copies ovf-env.xml off the medium (mode 0600) and unmounts it; the custom data decodes to the cloud-config', async () => {
    const tree = join(dir, 'tree');
    mkdirSync(tree);
    writeFileSync(join(tree, 'ovf-env.xml'), OVF);
    const iso = join(dir, 'provisioning.iso');
    execFileSync('genisoimage', ['-quiet', '-V', 'rd_rdfe_stable', '-J', '-R', '-o', iso, tree]);
    const dest = join(dir, 'run', 'ovf-env.xml');
    const lines: string[] = [];
    expect(await readProvisioningMedium([join(dir, 'no-such-device'), iso], dest, (l) => lines.push(l))).toBe(dest);
    expect(readFileSync(dest, 'utf8')).toBe(OVF);
    expect(statSync(dest).mode & 0o777).toBe(0o600);
    expect(parseOvfCustomData(readFileSync(dest, 'utf8')).toString()).toBe(CONFIG);
    expect(readFileSync('/proc/self/mounts', 'utf8')).not.toContain('basalt-provisioning-');
    expect(lines.some((l) => l.includes('copied to'))).toBe(true);
  });

  it('a device that is no medium, or none at all: nothing, with a log line', async () => {
    const junk = join(dir, 'junk.img');
    writeFileSync(junk, Buffer.alloc(1024 * 1024, 7));
    const lines: string[] = [];
    expect(await readProvisioningMedium([junk], join(dir, 'x.xml'), (l) => lines.push(l))).toBeUndefined();
    expect(lines.join('\n')).toMatch(/junk\.img: not a provisioning medium/);
    expect(await readProvisioningMedium([], join(dir, 'y.xml'))).toBeUndefined();
  });
});
