/**
 * The `coreos-cloudinit` program: v1.14.0's flags and flow
 * (coreos-cloudinit.go main). Logs go to stderr with Go's log timestamp,
 * program messages to stdout, as the original.
 */
import { parseGoFlags, usage, FlagError, type FlagSpec } from './goflag.js';
import { readFile } from 'node:fs/promises';
import { configDrive, ec2Metadata, findCloudConfigURL, localFile, openstackMetadata, procCmdline, selectDatasource, urlSource, type Datasource, type Metadata } from '../datasource/index.js';
import { PLATFORM_IDS, parsePlatformId, platformDatasources, type DatasourceSpec } from '../datasource/platform.js';
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
  { name: 'from-aws-imds', usage: '[Basalt] Download EC2 data with IMDSv2 session tokens (latest/...) from the provided url' },
  { name: 'from-azure-imds', usage: '[Basalt] Download Azure data from the IMDS at the provided url and report ready to the wireserver' },
  { name: 'azure-wireserver', usage: '[Basalt] The Azure wireserver to report ready to', default: 'http://168.63.129.16/' },
  { name: 'oem-from-cmdline', bool: true, usage: '[Basalt] Use the datasource of the platform named by basalt.oem.id= (or flatcar.oem.id=, coreos.oem.id=) in /proc/cmdline' },
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
  aws: { 'from-aws-imds': 'http://169.254.169.254/' },
  digitalocean: { 'from-digitalocean-metadata': 'http://169.254.169.254/' },
  'ec2-compat': { 'from-ec2-metadata': 'http://169.254.169.254/', 'from-configdrive': '/media/configdrive' },
  gce: { 'from-gce-metadata': 'http://metadata.google.internal/' },
  'rackspace-onmetal': { 'from-configdrive': '/media/configdrive', 'convert-netconf': 'debian' },
  azure: { 'from-azure-imds': 'http://169.254.169.254/' },
  openstack: { 'from-openstack-metadata': 'http://169.254.169.254/', 'from-configdrive': '/media/configdrive' },
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

type Env = Readonly<Record<string, string | undefined>>;

/**
 * -oem-from-cmdline: sets the flags of the datasources the platform id names.
 * Returns the platform id (null: none on the command line), or the exit code
 * for an unknown one (one line naming the parameter and the known ids).
 */
function platformFlags(f: Flags, cmdline: string, env: Env, log: (line: string) => void): string | null | number {
  const p = parsePlatformId(cmdline);
  if (p.kind === 'none') return null;
  if (p.kind === 'unknown') {
    log(`E_PLATFORM_ID: ${p.param}=${p.value} on the kernel command line is not a platform Basalt knows (hint: use one of ${PLATFORM_IDS.join(', ')})`);
    return 1;
  }
  const set = (d: DatasourceSpec) => {
    switch (d.kind) {
      case 'aws':
        return f.set('from-aws-imds', d.url);
      case 'gce':
        return f.set('from-gce-metadata', d.url);
      case 'digitalocean':
        return f.set('from-digitalocean-metadata', d.url);
      case 'openstack':
        return f.set('from-openstack-metadata', d.url);
      case 'azure':
        f.set('from-azure-imds', d.url);
        return f.set('azure-wireserver', d.wireserver);
      case 'vmware':
        return f.set('from-vmware-guestinfo', 'true');
    }
  };
  const specs = platformDatasources(p.id, env);
  for (const d of specs) set(d);
  log(`Platform "${p.id}" (${p.param}=${p.value}): ${specs.length === 0 ? 'no metadata service' : specs.map((d) => d.kind).join(', ')}`);
  return p.id;
}

/** The datasources the flags name, in v1.14.0's order (Basalt's platforms after them). */
async function datasources(f: Flags, env: Env, cmdline: string | null, log: (line: string) => void): Promise<Datasource[]> {
  const dss: Datasource[] = [];
  const http = {};
  const cmdlinePath = env['BASALT_PROC_CMDLINE'] ?? '/proc/cmdline';
  if (f.get('from-file')) dss.push(localFile(f.get('from-file')!));
  if (f.get('from-url')) dss.push(urlSource(f.get('from-url')!, http));
  if (f.get('from-configdrive')) dss.push(configDrive(f.get('from-configdrive')!, log));
  if (f.get('from-metadata-service') === 'true') dss.push(ec2Metadata('http://169.254.169.254/', http, log));
  if (f.get('from-ec2-metadata')) dss.push(ec2Metadata(f.get('from-ec2-metadata')!, http, log));
  if (f.get('from-openstack-metadata')) dss.push(openstackMetadata(f.get('from-openstack-metadata')!, http));
  // With -oem-from-cmdline the unit runs on a platform id alone: cloud-config-url= is read only when it is there.
  if (f.get('from-proc-cmdline') === 'true' && (cmdline === null || findCloudConfigURL(cmdline) !== null)) dss.push(procCmdline(cmdlinePath, http, log));
  // The platforms' services: each module loaded only when asked for.
  const specs: DatasourceSpec[] = [];
  const aws = f.get('from-aws-imds');
  if (aws) specs.push({ kind: 'aws', url: aws });
  const gce = f.get('from-gce-metadata');
  if (gce) specs.push({ kind: 'gce', url: gce });
  const dO = f.get('from-digitalocean-metadata');
  if (dO) specs.push({ kind: 'digitalocean', url: dO });
  const azure = f.get('from-azure-imds');
  if (azure) specs.push({ kind: 'azure', url: azure, wireserver: f.get('azure-wireserver') ?? 'http://168.63.129.16/' });
  if (f.get('from-vmware-guestinfo') === 'true') specs.push({ kind: 'vmware' });
  if (specs.length > 0) {
    const { openDatasource } = await import('../datasource/open.js');
    for (const d of specs) dss.push(await openDatasource(d, http, log));
  }
  return dss;
}

/** Exit 2 when no datasource is given: naming the v1.14.0 ones Basalt does not implement, or v1.14.0's message. */
function noDatasource(f: Flags, io: ProgramIO): number {
  const unsupported = ['from-waagent', 'from-packet-metadata', 'from-vmware-ovf-env'].filter((k) => (f.get(k) ?? '') !== '');
  for (const k of ['from-cloudsigma-metadata']) if (f.get(k) === 'true') unsupported.push(k);
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

/** `env` is the process environment; tests pass their own. */
export async function main(argv: string[], io: ProgramIO, env: Env = process.env): Promise<number> {
  const log = goLogger(io);
  const f = parseFlags(argv, io);
  if (typeof f === 'number') return f;
  const early = settle(f, io);
  if (early !== undefined) return early;
  let cmdline: string | null = null;
  let platform: string | null = null;
  if (f.get('oem-from-cmdline') === 'true') {
    const path = env['BASALT_PROC_CMDLINE'] ?? '/proc/cmdline';
    try {
      cmdline = await readFile(path, 'utf8');
    } catch (e) {
      log(`Failed reading ${path}: ${(e as Error).message}`);
      return 1;
    }
    const p = platformFlags(f, cmdline, env, log);
    if (typeof p === 'number') return p;
    platform = p;
  }
  const dss = await datasources(f, env, cmdline, log);
  if (dss.length === 0 && cmdline !== null) {
    log(platform === null ? 'No platform id and no cloud-config-url on the kernel command line: nothing to do' : `Platform "${platform}" has no datasource of its own: nothing to do`);
    return 0;
  }
  if (dss.length === 0) return noDatasource(f, io);
  const timeout = Number(env['BASALT_CLOUDINIT_DATASOURCE_TIMEOUT_MS'] ?? 5 * 60_000);
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
  const code = await runApply({
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
  const ready = await reportReady(ds, log);
  return ready || code !== 0 ? code : 1;
}

/** Azure counts a VM as provisioning until it reports ready: done once the config is applied, whatever its result. */
async function reportReady(ds: Datasource, log: (line: string) => void): Promise<boolean> {
  const r = (ds as Partial<{ reportReady: () => Promise<void> }>).reportReady;
  if (!r) return true;
  try {
    await r.call(ds);
    return true;
  } catch (e) {
    log(`Failed reporting ready: ${(e as Error).message}`);
    return false;
  }
}
