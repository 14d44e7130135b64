import { describe, expect, it } from 'vitest';
import { BasaltError } from '../../common/src/errors.js';
import { alignMiB, BUILD_PLATFORMS, canonicalPlatforms, convertArgs, gceTarArgs, MiB, needsIsoTools, needsQemuImg, needsTar, ovaMembers, ovaTarArgs, parsePlatforms, platformFiles, renderMf, renderOvf } from './platforms.js';

describe('parsePlatforms', () => {
  it('takes a comma-separated list, in the known order, without duplicates', () => {
    expect(parsePlatforms('qemu')).toEqual(['qemu']);
    expect(parsePlatforms('vmware,aws, gce,aws')).toEqual(['aws', 'gce', 'vmware']);
    expect(parsePlatforms(BUILD_PLATFORMS.join(','))).toEqual([...BUILD_PLATFORMS]);
    expect(canonicalPlatforms(['vmware', 'qemu', 'vmware'])).toEqual(['qemu', 'vmware']);
  });
  it('refuses an unknown or empty name with E_PLATFORM_UNKNOWN, one line, the known ones in the hint', () => {
    let caught: unknown;
    try {
      parsePlatforms('aws,nimbus');
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(BasaltError);
    const e = caught as BasaltError;
    expect(e.code).toBe('E_PLATFORM_UNKNOWN');
    expect(e.message).toBe('--platform aws,nimbus: nimbus is not a platform basalt build knows');
    expect(e.message).not.toContain('\n');
    expect(e.hint).toBe('use one or more of qemu, metal, pxe, iso, aws, gce, azure, openstack, vmware, digitalocean, comma-separated');
    expect(() => parsePlatforms('')).toThrow(/'' is not a platform/);
    expect(() => parsePlatforms('aws,')).toThrow(/'' is not a platform/);
    expect(parsePlatforms('iso,qemu')).toEqual(['qemu', 'iso']);
  });
});

describe('platform files', () => {
  it('follow <os.id>_production_<platform>_image.<ext>; qemu and pxe keep their outputs', () => {
    const all = Object.fromEntries(BUILD_PLATFORMS.map((p) => [p, platformFiles('basalt', p)]));
    expect(all).toEqual({
      qemu: [],
      pxe: [],
      iso: [{ file: 'basalt_production_iso_image.iso', kind: 'iso' }],
      metal: [{ file: 'basalt_production_metal_image.bin', kind: 'raw' }],
      aws: [
        { file: 'basalt_production_aws_image.bin', kind: 'raw' },
        { file: 'basalt_production_aws_image.vmdk', kind: 'vmdk' },
      ],
      gce: [{ file: 'basalt_production_gce_image.tar.gz', kind: 'gce-tar' }],
      azure: [{ file: 'basalt_production_azure_image.vhd', kind: 'vhd' }],
      openstack: [{ file: 'basalt_production_openstack_image.qcow2', kind: 'qcow2' }],
      vmware: [{ file: 'basalt_production_vmware_image.ova', kind: 'ova' }],
      digitalocean: [{ file: 'basalt_production_digitalocean_image.qcow2', kind: 'qcow2' }],
    });
    expect(needsQemuImg(['qemu', 'metal', 'gce', 'pxe'])).toBe(false);
    expect(needsQemuImg(['aws'])).toBe(true);
    expect(needsTar(['aws', 'azure'])).toBe(false);
    expect(needsTar(['vmware'])).toBe(true);
    expect(needsQemuImg(['iso'])).toBe(false);
    expect(needsIsoTools(['qemu', 'iso'])).toBe(true);
    expect(needsIsoTools(['aws'])).toBe(false);
  });
  it('converts with argv arrays as the platforms import them', () => {
    expect(convertArgs('vmdk', 'a.raw', 'b.vmdk')).toEqual(['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', 'a.raw', 'b.vmdk']);
    expect(convertArgs('vhd', 'a.raw', 'b.vhd')).toEqual(['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed,force_size=on', 'a.raw', 'b.vhd']);
    expect(convertArgs('qcow2', 'a', 'b')).toEqual(['convert', '-f', 'raw', '-O', 'qcow2', 'a', 'b']);
    expect(gceTarArgs('/o/x.tar.gz', '/w', 5)).toEqual(['--format=gnu', '-S', '-czf', '/o/x.tar.gz', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@5', '-C', '/w', 'disk.raw']);
    const m = ovaMembers('basalt');
    expect(m).toEqual({ ovf: 'basalt_production_vmware_image.ovf', vmdk: 'basalt_production_vmware_image-disk1.vmdk', mf: 'basalt_production_vmware_image.mf' });
    expect(ovaTarArgs('x.ova', '/w', 'basalt', 5).slice(-3)).toEqual([m.ovf, m.vmdk, m.mf]);
    expect(ovaTarArgs('x.ova', '/w', 'basalt', 5)[0]).toBe('--format=ustar');
  });
  it('aligns to whole MiB', () => {
    expect(alignMiB(8 * 1024 ** 3)).toBe(8 * 1024 ** 3);
    expect(alignMiB(8 * 1024 ** 3 + 1)).toBe(8 * 1024 ** 3 + MiB);
    expect(alignMiB(1)).toBe(MiB);
  });
  it('writes the OVA manifest as ovftool does', () => {
    expect(renderMf([{ file: 'a.ovf', sha256: 'ab'.repeat(32) }, { file: 'a-disk1.vmdk', sha256: 'cd'.repeat(32) }])).toBe(`SHA256(a.ovf)= ${'ab'.repeat(32)}\nSHA256(a-disk1.vmdk)= ${'cd'.repeat(32)}\n`);
  });
});

describe('renderOvf', () => {
  const ovf = renderOvf({ name: 'Basalt <0.1.0> & co', osId: 'basalt', vmdkBytes: 123456, capacity: 8 * 1024 ** 3, cpus: 2, memoryMiB: 2048 });
  it('describes one streamOptimized disk of the capacity, on pvscsi, with a vmxnet3 NIC and EFI firmware', () => {
    expect(ovf.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<Envelope ovf:version="1.0"')).toBe(true);
    expect(ovf).toContain('<File ovf:href="basalt_production_vmware_image-disk1.vmdk" ovf:id="file1" ovf:size="123456"/>');
    expect(ovf).toContain(`ovf:capacity="${8 * 1024 ** 3}"`);
    expect(ovf).toContain('vmdk.html#streamOptimized');
    expect(ovf).toMatch(/<rasd:ResourceSubType>VirtualSCSI<\/rasd:ResourceSubType>\s*<rasd:ResourceType>6</);
    expect(ovf).toMatch(/<rasd:ResourceSubType>VmxNet3<\/rasd:ResourceSubType>\s*<rasd:ResourceType>10</);
    expect(ovf).toMatch(/<rasd:HostResource>ovf:\/disk\/vmdisk1<\/rasd:HostResource>/);
    expect(ovf).toContain('vmw:key="firmware" vmw:value="efi"');
    expect(ovf).toContain('ovf:transport="com.vmware.guestInfo"');
    expect(ovf).toContain('ovf:key="guestinfo.coreos.config.data"');
    // Text is escaped.
    expect(ovf).toContain('<Name>Basalt &lt;0.1.0&gt; &amp; co</Name>');
  });
  it('is well-formed: every element opened is closed, in order', () => {
    const stack: string[] = [];
    for (const m of ovf.replace(/<\?xml[^>]*\?>/, '').matchAll(/<(\/?)([A-Za-z][\w:]*)[^>]*?(\/?)>/g)) {
      const [, close, name, self] = m;
      if (self) continue;
      if (close) expect(stack.pop()).toBe(name);
      else stack.push(name!);
    }
    expect(stack).toEqual([]);
  });
});
