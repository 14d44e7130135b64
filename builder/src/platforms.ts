/**
 * `basalt build --platform P[,P…]`, the pure part: which platforms a build
 * writes, the file each writes (one naming pattern), the argv of every
 * conversion, and the OVF descriptor and manifest of the vmware OVA. No I/O
 * here; platform-outputs.ts runs these.
 *
 * Every platform's disk is the same disk (one USR image); only the platform id
 * on its boot entry (`basalt.oem.id=P`, by entryWithPlatform of
 * common/src/platform.ts, the edit `basalt install -o` makes) and the
 * container format differ.
 *
 * File names: `<os.id>_production_<platform>_image.<ext>` (e.g.
 * basalt_production_aws_image.vmdk). qemu keeps today's names
 * (`<os.id>_production_image.bin`, `<os.id>_production_qemu_image.qcow2`) and
 * pxe its `<os.id>_production_pxe*` files; those carry no platform id (no id
 * and qemu/pxe mean the same to the first boot: no metadata service).
 */
import { BasaltError } from '../../common/src/errors.js';
import { BUILD_PLATFORMS, type BuildPlatform } from '../../common/src/platform.js';
import { BUILD_ERRORS } from './errors.js';

export { BUILD_PLATFORMS, type BuildPlatform };

export const MiB = 1024 * 1024;

/**
 * Pure: the platforms of a `--platform` value (comma-separated, in the order
 * BUILD_PLATFORMS lists them, duplicates dropped). An unknown or empty name
 * throws E_PLATFORM_UNKNOWN naming it; its hint lists the known ones.
 */
export function parsePlatforms(value: string): BuildPlatform[] {
  const names = value.split(',').map((s) => s.trim().toLowerCase());
  const bad = names.filter((n) => !(BUILD_PLATFORMS as readonly string[]).includes(n));
  if (bad.length > 0) {
    const what = bad.map((b) => (b === '' ? "''" : b)).join(', ');
    // The catalogue's hint lists BUILD_PLATFORMS.
    throw new BasaltError(BUILD_ERRORS.E_PLATFORM_UNKNOWN, `--platform ${value}: ${what} ${bad.length === 1 ? 'is not a platform' : 'are not platforms'} basalt build knows`);
  }
  return canonicalPlatforms(names as BuildPlatform[]);
}

/** Pure: the platforms of a list in BUILD_PLATFORMS' order, each once (the outputs key and the manifest see one spelling of a set). */
export function canonicalPlatforms(list: readonly BuildPlatform[]): BuildPlatform[] {
  return BUILD_PLATFORMS.filter((p) => list.includes(p));
}

/** Artifact kinds of the platforms' own files (raw and qcow2 are shared with qemu's). */
export type PlatformFileKind = 'raw' | 'qcow2' | 'vmdk' | 'vhd' | 'gce-tar' | 'ova' | 'iso';

export interface PlatformFile {
  file: string;
  kind: PlatformFileKind;
}

/** Pure: the name of a platform's file (`<os.id>_production_<platform>_image.<ext>`). */
export function platformFileName(osId: string, platform: BuildPlatform, ext: string): string {
  return `${osId}_production_${platform}_image.${ext}`;
}

/**
 * Pure: the files a platform writes besides qemu's and pxe's (which are the
 * outputs of today; empty for them). In the manifest's order.
 */
export function platformFiles(osId: string, platform: BuildPlatform): PlatformFile[] {
  const f = (ext: string, kind: PlatformFileKind): PlatformFile => ({ file: platformFileName(osId, platform, ext), kind });
  switch (platform) {
    case 'qemu':
    case 'pxe':
      return [];
    case 'metal':
      return [f('bin', 'raw')];
    case 'aws':
      return [f('bin', 'raw'), f('vmdk', 'vmdk')];
    case 'gce':
      return [f('tar.gz', 'gce-tar')];
    case 'azure':
      return [f('vhd', 'vhd')];
    case 'openstack':
    case 'digitalocean':
      return [f('qcow2', 'qcow2')];
    case 'vmware':
      return [f('ova', 'ova')];
    case 'iso':
      return [f('iso', 'iso')];
  }
}

/** Pure: does any of the platforms need qemu-img (besides qemu's own qcow2)? */
export function needsQemuImg(platforms: readonly BuildPlatform[]): boolean {
  return platforms.some((p) => platformFiles('x', p).some((f) => f.kind !== 'raw' && f.kind !== 'gce-tar' && f.kind !== 'iso'));
}

/** Pure: does any of the platforms need xorriso and zstd (the live ISO, which carries the disk compressed)? */
export function needsIsoTools(platforms: readonly BuildPlatform[]): boolean {
  return platforms.includes('iso');
}

/** Pure: does any of the platforms need tar (GCE's archive, the OVA)? */
export function needsTar(platforms: readonly BuildPlatform[]): boolean {
  return platforms.some((p) => platformFiles('x', p).some((f) => f.kind === 'gce-tar' || f.kind === 'ova'));
}

/** Pure: `n` rounded up to a whole MiB (Azure takes a VHD only of a whole number of MiB). */
export function alignMiB(n: number): number {
  return Math.ceil(n / MiB) * MiB;
}

/** Pure: qemu-img's argv converting a raw disk to `format` (streamOptimized vmdk, fixed VHD of the exact size, or qcow2). */
export function convertArgs(format: 'vmdk' | 'vhd' | 'qcow2', from: string, to: string): string[] {
  const target: Record<typeof format, string[]> = {
    vmdk: ['-O', 'vmdk', '-o', 'subformat=streamOptimized'],
    // force_size: the VHD's virtual size is the raw size, not rounded to a CHS geometry.
    vhd: ['-O', 'vpc', '-o', 'subformat=fixed,force_size=on'],
    qcow2: ['-O', 'qcow2'],
  };
  return ['convert', '-f', 'raw', ...target[format], from, to];
}

/** Pure: tar's options making its members the same on every build (owner, mode, time). */
function reproducibleTar(epoch: number): string[] {
  return ['--owner=0', '--group=0', '--numeric-owner', `--mtime=@${epoch}`];
}

/**
 * Pure: tar's argv for GCE's archive: GNU format, sparse, gzip, one member
 * `disk.raw` (in `dir`), as `gcloud compute images create --source-uri` takes it.
 */
export function gceTarArgs(archive: string, dir: string, epoch: number): string[] {
  return ['--format=gnu', '-S', '-czf', archive, ...reproducibleTar(epoch), '-C', dir, 'disk.raw'];
}

/** Pure: the members of the vmware OVA, in the order the OVF spec wants them (descriptor first, manifest last). */
export function ovaMembers(osId: string): { ovf: string; vmdk: string; mf: string } {
  const base = `${osId}_production_vmware_image`;
  return { ovf: `${base}.ovf`, vmdk: `${base}-disk1.vmdk`, mf: `${base}.mf` };
}

/** Pure: tar's argv for the OVA: ustar, the members in ovaMembers' order, from `dir`. */
export function ovaTarArgs(archive: string, dir: string, osId: string, epoch: number): string[] {
  const m = ovaMembers(osId);
  return ['--format=ustar', '-cf', archive, ...reproducibleTar(epoch), '--mode=0644', '-C', dir, m.ovf, m.vmdk, m.mf];
}

/** Pure: the OVA's manifest, as ovftool writes it: `SHA256(name)= hex`, one line a file. */
export function renderMf(files: readonly { file: string; sha256: string }[]): string {
  return files.map((f) => `SHA256(${f.file})= ${f.sha256}\n`).join('');
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The guestinfo keys the vmware datasource reads (cloudinit/src/datasource/vmware.ts), offered as vApp properties. */
export const OVF_GUESTINFO: readonly { key: string; label: string }[] = [
  { key: 'guestinfo.coreos.config.data', label: 'cloud-config (user data)' },
  { key: 'guestinfo.coreos.config.data.encoding', label: 'encoding of the user data: base64, gzip+base64, or empty' },
  { key: 'guestinfo.coreos.config.url', label: 'URL of the cloud-config' },
  { key: 'guestinfo.hostname', label: 'host name' },
];

export interface OvfInput {
  /** The VM's name (os.name and version). */
  name: string;
  osId: string;
  /** Bytes of the vmdk file in the OVA. */
  vmdkBytes: number;
  /** Virtual size of the disk in bytes. */
  capacity: number;
  cpus: number;
  memoryMiB: number;
}

/**
 * Pure: the OVF 1.0 descriptor of the vmware OVA: one streamOptimized disk on
 * a paravirtual SCSI controller (pvscsi), a vmxnet3 NIC, EFI firmware (the
 * image boots systemd-boot), and the guestinfo keys of the vmware datasource
 * as vApp properties carried by the com.vmware.guestInfo transport.
 */
export function renderOvf(o: OvfInput): string {
  const m = ovaMembers(o.osId);
  const item = (fields: [string, string][]) => `      <Item>\n${fields.map(([k, v]) => `        <rasd:${k}>${xml(v)}</rasd:${k}>`).join('\n')}\n      </Item>`;
  const props = OVF_GUESTINFO.map(
    (p) => `      <Property ovf:key="${p.key}" ovf:type="string" ovf:userConfigurable="true" ovf:value="">\n        <Label>${xml(p.label)}</Label>\n      </Property>`,
  ).join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="${m.vmdk}" ovf:id="file1" ovf:size="${o.vmdkBytes}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="${o.capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="${xml(o.osId)}">
    <Info>A virtual machine</Info>
    <Name>${xml(o.name)}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="other26xLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection ovf:transport="com.vmware.guestInfo">
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>${xml(o.osId)}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
${item([
  ['AllocationUnits', 'hertz * 10^6'],
  ['Description', 'Number of Virtual CPUs'],
  ['ElementName', `${o.cpus} virtual CPU(s)`],
  ['InstanceID', '1'],
  ['ResourceType', '3'],
  ['VirtualQuantity', String(o.cpus)],
])}
${item([
  ['AllocationUnits', 'byte * 2^20'],
  ['Description', 'Memory Size'],
  ['ElementName', `${o.memoryMiB}MB of memory`],
  ['InstanceID', '2'],
  ['ResourceType', '4'],
  ['VirtualQuantity', String(o.memoryMiB)],
])}
${item([
  ['Address', '0'],
  ['Description', 'SCSI Controller'],
  ['ElementName', 'SCSI Controller 0'],
  ['InstanceID', '3'],
  ['ResourceSubType', 'VirtualSCSI'],
  ['ResourceType', '6'],
])}
${item([
  ['AddressOnParent', '0'],
  ['ElementName', 'Hard Disk 1'],
  ['HostResource', 'ovf:/disk/vmdisk1'],
  ['InstanceID', '4'],
  ['Parent', '3'],
  ['ResourceType', '17'],
])}
${item([
  ['AddressOnParent', '0'],
  ['AutomaticAllocation', 'true'],
  ['Connection', 'VM Network'],
  ['Description', 'VmxNet3 ethernet adapter on "VM Network"'],
  ['ElementName', 'Network adapter 1'],
  ['InstanceID', '5'],
  ['ResourceSubType', 'VmxNet3'],
  ['ResourceType', '10'],
])}
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
    <ProductSection ovf:required="false">
      <Info>guestinfo: the cloud-config of the first boot (basalt.oem.id=vmware)</Info>
      <Product>${xml(o.name)}</Product>
${props}
    </ProductSection>
  </VirtualSystem>
</Envelope>
`;
}
