/**
 * Datasources as coreos-cloudinit v1.14.0 defines them (datasource/*):
 * where user-data and metadata come from. Network access happens only here.
 *
 * - local-file (-from-file), url (-from-url), proc-cmdline (-from-proc-cmdline)
 * - cloud-drive (-from-configdrive DIR, or a vfat/iso9660 image labelled config-2)
 * - ec2-metadata-service (-from-ec2-metadata URL): URL/2009-04-04/{user-data,meta-data/...}
 * - openstack-metadata-service (Basalt: -from-openstack-metadata URL): URL/openstack/latest/{user_data,meta_data.json}
 *
 * The platforms' services, each in its own module, loaded when a flag or the
 * platform id (platform.ts) asks for it: aws.ts (IMDSv2), gce.ts,
 * digitalocean.ts, azure.ts (IMDS + wireserver ready report), vmware.ts
 * (guestinfo through vmware-rpctool).
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface Metadata {
  /** The platform's id of this machine (EC2 instance-id, GCE id, Azure vmId, DigitalOcean droplet_id). */
  instanceId?: string;
  publicIPv4?: string;
  publicIPv6?: string;
  privateIPv4?: string;
  privateIPv6?: string;
  hostname?: string;
  /** name -> key, in the order found */
  sshPublicKeys?: [string, string][];
  networkConfig?: Uint8Array;
}

export interface Datasource {
  type: string;
  isAvailable(): Promise<boolean>;
  availabilityChanges: boolean;
  /** Where the OEM config root is (for ConfigRoot). */
  configRoot: string;
  fetchUserdata(): Promise<Uint8Array>;
  fetchMetadata(): Promise<Metadata>;
}

export type Log = (line: string) => void;

// ----------------------------------------------------------------- HTTP

/** pkg/http_client.go: 4xx means "not found". */
export class HttpNotFound extends Error {}

export interface HttpOptions {
  /** Attempts of GetRetry (v1.14.0: 15). */
  attempts?: number;
  /** First backoff in ms (v1.14.0: 50, doubling to 5 s). */
  backoffMs?: number;
  timeoutMs?: number;
  headers?: Record<string, string>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The largest user-data or metadata document accepted (EC2 caps user-data at 16 KiB; config drives go further). */
export const MAX_DATASOURCE_BYTES = 32 * 1024 * 1024;

async function httpGetOnce(url: string, o: HttpOptions): Promise<Uint8Array> {
  if (!url.startsWith('http')) throw new Error(`URL ${url} does not have a valid HTTP scheme`);
  const ms = o.timeoutMs ?? 10_000;
  // Loaded on first use: the HTTP client (got) is most of what a start-up would compile, and
  // '-validate -from-file' and the config drive never need it.
  const { httpClient, requestBytes } = await import('../../../common/src/http.js');
  const res = await requestBytes(httpClient({ connectMs: ms, stallMs: ms, totalMs: ms }), url, { headers: o.headers ?? {}, maxBytes: MAX_DATASOURCE_BYTES });
  if (res.status >= 200 && res.status < 300) return new Uint8Array(res.body);
  if (res.status >= 400 && res.status < 500) throw new HttpNotFound(`Not found. HTTP status code: ${res.status}`);
  throw new Error(`Server error. HTTP status code: ${res.status}`);
}

/** Client.GetRetry: retries with exponential backoff; a 4xx is final. */
export async function httpGetRetry(url: string, o: HttpOptions = {}): Promise<Uint8Array> {
  const attempts = o.attempts ?? 15;
  let backoff = o.backoffMs ?? 50;
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await httpGetOnce(url, o);
    } catch (e) {
      if (e instanceof HttpNotFound) throw e;
      last = e;
    }
    if (i < attempts - 1) {
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 5000);
    }
  }
  throw new Error(`Unable to fetch data: ${last instanceof Error ? last.message : String(last)}`);
}

async function fetchData(url: string, o: HttpOptions): Promise<Uint8Array> {
  try {
    return await httpGetRetry(url, o);
  } catch (e) {
    if (e instanceof HttpNotFound) return new Uint8Array(0);
    throw e;
  }
}

// --------------------------------------------------------------- sources

export function localFile(path: string): Datasource {
  return {
    type: 'local-file',
    availabilityChanges: true,
    configRoot: '',
    async isAvailable() {
      try {
        await stat(path);
        return true;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code !== 'ENOENT';
      }
    },
    fetchUserdata: async () => new Uint8Array(await readFile(path)),
    fetchMetadata: async () => ({}),
  };
}

export function urlSource(url: string, o: HttpOptions = {}): Datasource {
  return {
    type: 'url',
    availabilityChanges: true,
    configRoot: '',
    async isAvailable() {
      try {
        await httpGetOnce(url, o);
        return true;
      } catch {
        return false;
      }
    },
    fetchUserdata: () => httpGetRetry(url, o),
    fetchMetadata: async () => ({}),
  };
}

/** findCloudConfigURL: the last `cloud-config-url=` (or cloud_config_url=) token. */
export function findCloudConfigURL(cmdline: string, log: Log = () => {}): string | null {
  let url: string | null = null;
  for (const token of cmdline.split(' ')) {
    const eq = token.indexOf('=');
    const key = (eq < 0 ? token : token.slice(0, eq)).replace(/_/g, '-');
    if (key !== 'cloud-config-url') continue;
    if (eq < 0) {
      log('Found cloud-config-url in /proc/cmdline with no value, ignoring.');
      continue;
    }
    url = token.slice(eq + 1);
  }
  return url;
}

export function procCmdline(location = '/proc/cmdline', o: HttpOptions = {}, log: Log = () => {}): Datasource {
  const find = async () => findCloudConfigURL((await readFile(location, 'utf8')).trim(), log);
  return {
    type: 'proc-cmdline',
    availabilityChanges: false,
    configRoot: '',
    async isAvailable() {
      try {
        return (await find()) !== null;
      } catch {
        return false;
      }
    },
    async fetchUserdata() {
      const url = await find();
      if (url === null) throw new Error('cloud-config-url not found');
      return httpGetRetry(url, o);
    },
    fetchMetadata: async () => ({}),
  };
}

interface OpenStackMeta {
  public_keys?: Record<string, string>;
  hostname?: string;
  network_config?: { content_path?: string };
}

function parseOpenStackMeta(data: Uint8Array): OpenStackMeta {
  const m = JSON.parse(Buffer.from(data).toString('utf8')) as unknown;
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new Error('json: cannot unmarshal meta_data.json');
  return m;
}

/**
 * cloud-drive: DIR/openstack/latest/{user_data,meta_data.json}; missing files
 * count as empty. `root` may also be a vfat or iso9660 image file labelled
 * config-2 (read with mtools / isoinfo, never mounted).
 */
export function configDrive(root: string, log: Log = () => {}): Datasource {
  let image: Map<string, Uint8Array> | null | undefined;
  const isImage = async () => {
    if (image !== undefined) return image;
    let isFile = false;
    try {
      isFile = (await stat(root)).isFile();
    } catch {
      isFile = false;
    }
    image = isFile ? await (await import('./image.js')).readConfigDriveImage(root) : null;
    return image;
  };
  const tryRead = async (rel: string): Promise<Uint8Array> => {
    const full = join(root, rel);
    log(`Attempting to read from "${full}"`);
    const img = await isImage();
    if (img) return img.get(rel) ?? new Uint8Array(0);
    try {
      return new Uint8Array(await readFile(full));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Uint8Array(0);
      throw e;
    }
  };
  return {
    type: 'cloud-drive',
    availabilityChanges: true,
    configRoot: join(root, 'openstack'),
    async isAvailable() {
      try {
        await stat(root);
        return true;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code !== 'ENOENT';
      }
    },
    fetchUserdata: () => tryRead('openstack/latest/user_data'),
    async fetchMetadata() {
      const data = await tryRead('openstack/latest/meta_data.json');
      if (data.length === 0) return {};
      const m = parseOpenStackMeta(data);
      const md: Metadata = {};
      if (m.public_keys) md.sshPublicKeys = Object.entries(m.public_keys);
      if (m.hostname) md.hostname = m.hostname;
      if (m.network_config?.content_path) md.networkConfig = await tryRead(join('openstack', m.network_config.content_path));
      return md;
    },
  };
}

function withSlash(u: string): string {
  return u.endsWith('/') ? u : u + '/';
}

/** A metadata-service listing: one attribute per line. */
async function ec2Attrs(url: string, o: HttpOptions): Promise<string[]> {
  const t = Buffer.from(await httpGetRetry(url, o)).toString('utf8');
  const lines = t.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => l.replace(/\r$/, ''));
}

/** The first line of an attribute; null when the service does not have it. */
async function ec2Attr(url: string, o: HttpOptions): Promise<string | null> {
  try {
    const a = await ec2Attrs(url, o);
    return a[0] ?? '';
  } catch (e) {
    if (e instanceof HttpNotFound) return null;
    throw e;
  }
}

/** The SSH keys under `md`/public-keys ("ID=NAME" entries), as [name, key]; null when there is no such listing. */
async function ec2PublicKeys(md: string, o: HttpOptions, log: Log): Promise<[string, string][] | null> {
  let names: string[];
  try {
    names = await ec2Attrs(`${md}/public-keys`, o);
  } catch (e) {
    if (!(e instanceof HttpNotFound)) throw e;
    return null;
  }
  const ids = new Map<string, string>();
  for (const kn of names) {
    const eq = kn.indexOf('=');
    if (eq < 0) throw new Error(`malformed public key: ${JSON.stringify(kn)}`);
    ids.set(kn.slice(eq + 1), kn.slice(0, eq));
  }
  const keys: [string, string][] = [];
  for (const [name, id] of ids) {
    const key = await ec2Attr(`${md}/public-keys/${id}/openssh-key`, o);
    keys.push([name, key ?? '']);
    log(`Found SSH key for "${name}"`);
  }
  return keys;
}

/** The meta-data v1.14.0 reads from `md` (URL/API/meta-data): SSH keys, hostname, addresses. */
async function ec2FetchMetadata(md: string, o: HttpOptions, log: Log): Promise<Metadata> {
  const m: Metadata = {};
  const keys = await ec2PublicKeys(md, o, log);
  if (keys) m.sshPublicKeys = keys;
  const h = await ec2Attr(`${md}/hostname`, o);
  if (h !== null) m.hostname = h.split(' ')[0];
  const l = await ec2Attr(`${md}/local-ipv4`, o);
  if (l !== null && isIP(l)) m.privateIPv4 = l;
  const p = await ec2Attr(`${md}/public-ipv4`, o);
  if (p !== null && isIP(p)) m.publicIPv4 = p;
  return m;
}

/**
 * ec2-metadata-service at URL/2009-04-04/ (the API version v1.14.0 asks for).
 * A service that only offers URL/latest/ (many EC2-compatible clouds and
 * metadata proxies) is read there instead.
 */
export function ec2Metadata(rootUrl: string, o: HttpOptions = {}, log: Log = () => {}): Datasource {
  const root = withSlash(rootUrl);
  let api: Promise<string> | undefined;
  const apiRoot = (): Promise<string> =>
    (api ??= httpGetOnce(root + '2009-04-04/', o).then(
      () => root + '2009-04-04/',
      () =>
        httpGetOnce(root + 'latest/', o).then(
          () => root + 'latest/',
          () => root + '2009-04-04/',
        ),
    ));
  return {
    type: 'ec2-metadata-service',
    availabilityChanges: true,
    configRoot: root,
    async isAvailable() {
      try {
        await httpGetOnce(await apiRoot(), o);
        return true;
      } catch {
        api = undefined;
        return false;
      }
    },
    fetchUserdata: async () => fetchData((await apiRoot()) + 'user-data', o),
    fetchMetadata: async () => ec2FetchMetadata((await apiRoot()) + 'meta-data', o, log),
  };
}

/** Basalt: an OpenStack metadata service at URL/openstack/latest/ (the config-drive layout over HTTP). */
export function openstackMetadata(rootUrl: string, o: HttpOptions = {}): Datasource {
  const root = withSlash(rootUrl) + 'openstack/';
  return {
    type: 'openstack-metadata-service',
    availabilityChanges: true,
    configRoot: root,
    async isAvailable() {
      try {
        await httpGetOnce(root + 'latest/meta_data.json', o);
        return true;
      } catch (e) {
        return e instanceof HttpNotFound;
      }
    },
    fetchUserdata: () => fetchData(root + 'latest/user_data', o),
    async fetchMetadata() {
      const data = await fetchData(root + 'latest/meta_data.json', o);
      if (data.length === 0) return {};
      const m = parseOpenStackMeta(data);
      const md: Metadata = {};
      if (m.public_keys) md.sshPublicKeys = Object.entries(m.public_keys);
      if (m.hostname) md.hostname = m.hostname;
      if (m.network_config?.content_path) md.networkConfig = await fetchData(root + m.network_config.content_path.replace(/^\//, ''), o);
      return md;
    },
  };
}

function isIP(s: string): boolean {
  return /^(\d{1,3})(\.\d{1,3}){3}$/.test(s) || (s.includes(':') && /^[0-9a-fA-F:.]+$/.test(s));
}

/**
 * selectDatasource: polls every source (backoff 100 ms doubling to 30 s) until
 * one is available, or the deadline passes. Returns null then.
 */
export async function selectDatasource(sources: Datasource[], log: Log, deadlineMs = 5 * 60_000): Promise<Datasource | null> {
  const start = Date.now();
  let done = false;
  const poll = async (s: Datasource): Promise<Datasource | null> => {
    let d = 100;
    for (;;) {
      if (done) return null;
      log(`Checking availability of "${s.type}"`);
      if (await s.isAvailable()) return s;
      if (!s.availabilityChanges) return null;
      const left = deadlineMs - (Date.now() - start);
      if (left <= 0) return null;
      await sleep(Math.min(d, left));
      d = Math.min(d * 2, 30_000);
    }
  };
  return new Promise((resolve) => {
    let pending = sources.length;
    if (pending === 0) resolve(null);
    for (const s of sources) {
      void poll(s).then((r) => {
        pending--;
        if (r && !done) {
          done = true;
          resolve(r);
        } else if (pending === 0 && !done) {
          done = true;
          resolve(null);
        }
      });
    }
  });
}
