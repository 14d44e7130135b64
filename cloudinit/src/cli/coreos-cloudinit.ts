/**
 * The `coreos-cloudinit` program: v1.14.0's flags and flow
 * (coreos-cloudinit.go main). Logs go to stderr with Go's log timestamp,
 * program messages to stdout, as the original.
 */
import { parseGoFlags, usage, FlagError, type FlagSpec } from './goflag.js';
import { configDrive, ec2Metadata, localFile, openstackMetadata, procCmdline, selectDatasource, urlSource, type Datasource, type Metadata } from '../datasource/index.js';
import { decompressIfGzip, formatEntry, validateUserData } from '../validate/validate.js';

export interface ProgramIO {
  out(text: string): void;
  err(text: string): void;
}

const FLAGS: FlagSpec[] = [
  { name: 'version', bool: true, usage: 'Print the version and exit' },
  { name: 'ignore-failure', bool: true, usage: 'Exits with 0 status in the event of malformed input from user-data' },
  { name: 'from-file', usage: 'Read user-data from provided file' },
  { name: 'from-configdrive', usage: 'Read data from provided cloud-drive directory (or a config-2 vfat/iso9660 image)' },
  { name: 'from-waagent', usage: 'Read data from provided waagent directory' },
  { name: 'from-metadata-service', bool: true, usage: '[DEPRECATED - Use -from-ec2-metadata] Download data from metadata service' },
  { name: 'from-ec2-metadata', usage: 'Download EC2 data from the provided url' },
  { name: 'from-openstack-metadata', usage: '[Basalt] Download OpenStack data (openstack/latest/...) from the provided url' },
  { name: 'from-gce-metadata', usage: 'Download GCE data from the provided url' },
  { name: 'from-cloudsigma-metadata', bool: true, usage: 'Download data from CloudSigma server context' },
  { name: 'from-digitalocean-metadata', usage: 'Download DigitalOcean data from the provided url' },
  { name: 'from-packet-metadata', usage: 'Download Packet data from metadata service' },
  { name: 'from-url', usage: 'Download user-data from provided url' },
  { name: 'from-proc-cmdline', bool: true, usage: "Parse /proc/cmdline for 'cloud-config-url=<url>', using the cloud-config served by an HTTP GET to <url>" },
  { name: 'from-vmware-guestinfo', bool: true, usage: 'Read data from VMware guestinfo' },
  { name: 'from-vmware-ovf-env', usage: 'Read data from OVF Environment' },
  { name: 'oem', usage: 'Use the settings specific to the provided OEM' },
  { name: 'convert-netconf', usage: 'Read the network config provided in cloud-drive and translate it from the specified format into networkd unit files' },
  { name: 'workspace', usage: 'Base directory coreos-cloudinit should use to store data', default: '/var/lib/coreos-cloudinit' },
  { name: 'ssh-key-name', usage: 'Add SSH keys to the system with the given name', default: 'coreos-cloudinit' },
  { name: 'validate', bool: true, usage: '[EXPERIMENTAL] Validate the user-data but do not apply it to the system' },
  { name: 'root', usage: '[Basalt] Apply into this directory tree instead of /' },
];

const OEMS: Record<string, Record<string, string>> = {
  digitalocean: { 'from-digitalocean-metadata': 'http://169.254.169.254/' },
  'ec2-compat': { 'from-ec2-metadata': 'http://169.254.169.254/', 'from-configdrive': '/media/configdrive' },
  gce: { 'from-gce-metadata': 'http://metadata.google.internal/' },
  'rackspace-onmetal': { 'from-configdrive': '/media/configdrive', 'convert-netconf': 'debian' },
  azure: { 'from-waagent': '/var/lib/waagent' },
  cloudsigma: { 'from-cloudsigma-metadata': 'true' },
  packet: { 'from-packet-metadata': 'https://metadata.packet.net/' },
  vmware: { 'from-vmware-guestinfo': 'true', 'convert-netconf': 'vmware' },
};

export const VERSION = 'v1.14.0+basalt';

function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}/${p(d.getMonth() + 1)}/${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Go's log.Println to stderr. */
export function goLogger(io: ProgramIO) {
  return (line: string) => io.err(`${stamp()} ${line}\n`);
}

function goQuoteList(xs: string[]): string {
  return '[' + xs.map((x) => JSON.stringify(x)).join(' ') + ']';
}

type Flags = Map<string, string>;

/** The flags, or the exit code when parsing ends the program (-help, a bad flag). */
function parseFlags(argv: string[], io: ProgramIO): Flags | number {
  let parsed;
  try {
    parsed = parseGoFlags(argv, FLAGS);
  } catch (e) {
    if (e instanceof FlagError) {
      io.err(`${e.message}\n${usage('coreos-cloudinit', FLAGS)}`);
      return 2;
    }
    throw e;
  }
  if (parsed.help) {
    io.err(usage('coreos-cloudinit', FLAGS));
    return 0;
  }
  return parsed.values;
}

/** Applies -oem's settings to the flags, then handles -version and checks -convert-netconf; the exit code when the program ends here. */
function settle(f: Flags, io: ProgramIO): number | undefined {
  const oem = f.get('oem') ?? '';
  if (oem !== '') {
    const c = OEMS[oem];
    if (!c) {
      io.out(`Invalid option to -oem: ${JSON.stringify(oem)}. Supported options: ${goQuoteList(Object.keys(OEMS))}\n`);
      return 2;
    }
    for (const [k, v] of Object.entries(c)) f.set(k, v);
  }
  if (f.get('version') === 'true') {
    io.out(`coreos-cloudinit ${VERSION}\n`);
    return 0;
  }
  const netconf = f.get('convert-netconf') ?? '';
  if (!['', 'debian', 'packet', 'vmware'].includes(netconf)) {
    io.out(`Invalid option to -convert-netconf: '${netconf}'. Supported options: 'debian, packet, vmware'\n`);
    return 2;
  }
  return undefined;
}

/** The datasources the flags name, in v1.14.0's order. */
function datasources(f: Flags, log: (line: string) => void): Datasource[] {
  const dss: Datasource[] = [];
  const http = {};
  if (f.get('from-file')) dss.push(localFile(f.get('from-file')!));
  if (f.get('from-url')) dss.push(urlSource(f.get('from-url')!, http));
  if (f.get('from-configdrive')) dss.push(configDrive(f.get('from-configdrive')!, log));
  if (f.get('from-metadata-service') === 'true') dss.push(ec2Metadata('http://169.254.169.254/', http, log));
  if (f.get('from-ec2-metadata')) dss.push(ec2Metadata(f.get('from-ec2-metadata')!, http, log));
  if (f.get('from-openstack-metadata')) dss.push(openstackMetadata(f.get('from-openstack-metadata')!, http));
  if (f.get('from-proc-cmdline') === 'true') dss.push(procCmdline(process.env['BASALT_PROC_CMDLINE'] ?? '/proc/cmdline', http, log));
  return dss;
}

/** Exit 2 when no datasource is given: naming the v1.14.0 ones Basalt does not implement, or v1.14.0's message. */
function noDatasource(f: Flags, io: ProgramIO): number {
  const unsupported = ['from-waagent', 'from-gce-metadata', 'from-digitalocean-metadata', 'from-packet-metadata', 'from-vmware-ovf-env'].filter((k) => (f.get(k) ?? '') !== '');
  for (const k of ['from-cloudsigma-metadata', 'from-vmware-guestinfo']) if (f.get(k) === 'true') unsupported.push(k);
  if (unsupported.length > 0) {
    io.out(`Basalt's coreos-cloudinit does not implement ${unsupported.map((u) => '-' + u).join(', ')}\n`);
    return 2;
  }
  io.out(
    'Provide at least one of --from-file, --from-configdrive, --from-ec2-metadata, --from-gce-metadata, --from-cloudsigma-metadata, --from-packet-metadata, --from-digitalocean-metadata, --from-vmware-guestinfo, --from-waagent, --from-url or --from-proc-cmdline\n',
  );
  return 2;
}

/** The user-data, decompressed; `failure` when fetching or decompressing failed (v1.14.0 continues with what it has). */
async function fetchUserdata(ds: Datasource, log: (line: string) => void): Promise<{ userdata: Uint8Array; failure: boolean }> {
  let failure = false;
  log(`Fetching user-data from datasource of type "${ds.type}"`);
  let userdata: Uint8Array = new Uint8Array(0);
  try {
    userdata = await ds.fetchUserdata();
  } catch (e) {
    log(`Failed fetching user-data from datasource: ${(e as Error).message}. Continuing...`);
    failure = true;
  }
  const gz = decompressIfGzip(userdata);
  if (gz.error) {
    log(`Failed decompressing user-data from datasource: ${gz.error}. Continuing...`);
    failure = true;
  }
  return { userdata: gz.data, failure };
}

export async function main(argv: string[], io: ProgramIO): Promise<number> {
  const log = goLogger(io);
  const f = parseFlags(argv, io);
  if (typeof f === 'number') return f;
  const early = settle(f, io);
  if (early !== undefined) return early;
  const dss = datasources(f, log);
  if (dss.length === 0) return noDatasource(f, io);
  const timeout = Number(process.env['BASALT_CLOUDINIT_DATASOURCE_TIMEOUT_MS'] ?? 5 * 60_000);
  const ds = await selectDatasource(dss, log, timeout);
  if (!ds) {
    log('No datasources available in time');
    return 1;
  }
  const { userdata, failure } = await fetchUserdata(ds, log);
  const report = validateUserData(userdata);
  for (const e of report.entries) log(formatEntry(e));
  if (f.get('validate') === 'true') return report.entries.length > 0 ? 1 : 0;
  log(`Fetching meta-data from datasource of type "${ds.type}"`);
  let metadata: Metadata;
  try {
    metadata = await ds.fetchMetadata();
  } catch (e) {
    log(`Failed fetching meta-data from datasource: ${(e as Error).message}`);
    return 1;
  }
  const { runApply } = await import('../apply/run.js');
  return runApply({
    userdata,
    metadata,
    report,
    root: f.get('root') ?? '/',
    workspace: f.get('workspace') ?? '/var/lib/coreos-cloudinit',
    sshKeyName: f.get('ssh-key-name') ?? 'coreos-cloudinit',
    convertNetconf: f.get('convert-netconf') ?? '',
    ignoreFailure: f.get('ignore-failure') === 'true',
    failure,
    log,
    out: (t) => io.out(t),
    configRoot: ds.configRoot,
  });
}
