/**
 * digitalocean: the droplet metadata service, one JSON document at
 * ROOT/metadata/v1.json (ROOT http://169.254.169.254/) with droplet_id,
 * hostname, user_data, public_keys and interfaces {public, private}: [{ipv4,
 * ipv6, ...}]. Side effects: network requests (parseDigitalOcean is pure).
 */
import { BasaltError } from '../../../common/src/errors.js';
import { CLOUDINIT_ERRORS } from '../errors.js';
import type { Datasource, HttpOptions, Metadata } from './index.js';
import { metaRequest, statusError, withSlash } from './http-meta.js';

export const DIGITALOCEAN_METADATA_URL = 'http://169.254.169.254/';

export interface DigitalOceanDoc {
  userdata: string;
  metadata: Metadata;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const strAt = (o: unknown, ...path: (string | number)[]): string | undefined => {
  let v: unknown = o;
  for (const p of path) {
    if (typeof p === 'number') v = Array.isArray(v) ? (v as unknown[])[p] : undefined;
    else v = isObj(v) ? v[p] : undefined;
  }
  return typeof v === 'string' && v !== '' ? v : undefined;
};

/** metadata/v1.json to user-data and metadata; E_METADATA_FORMAT when it is not a JSON object. Pure. */
export function parseDigitalOcean(text: string, url: string): DigitalOceanDoc {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new BasaltError(CLOUDINIT_ERRORS.E_METADATA_FORMAT, `${url}: not JSON: ${(e as Error).message}`);
  }
  if (!isObj(doc)) throw new BasaltError(CLOUDINIT_ERRORS.E_METADATA_FORMAT, `${url}: not a JSON object`);
  const md: Metadata = {};
  if (typeof doc['droplet_id'] === 'number' || typeof doc['droplet_id'] === 'string') md.instanceId = String(doc['droplet_id']);
  const h = strAt(doc, 'hostname');
  if (h) md.hostname = h;
  const set = (k: 'publicIPv4' | 'publicIPv6' | 'privateIPv4' | 'privateIPv6', v: string | undefined) => {
    if (v) md[k] = v;
  };
  set('publicIPv4', strAt(doc, 'interfaces', 'public', 0, 'ipv4', 'ip_address'));
  set('publicIPv6', strAt(doc, 'interfaces', 'public', 0, 'ipv6', 'ip_address'));
  set('privateIPv4', strAt(doc, 'interfaces', 'private', 0, 'ipv4', 'ip_address'));
  set('privateIPv6', strAt(doc, 'interfaces', 'private', 0, 'ipv6', 'ip_address'));
  const keys = doc['public_keys'];
  if (Array.isArray(keys)) md.sshPublicKeys = keys.filter((k): k is string => typeof k === 'string' && k.trim() !== '').map((k, i) => [String(i), k.trim()]);
  return { userdata: typeof doc['user_data'] === 'string' ? doc['user_data'] : '', metadata: md };
}

export function digitalOceanMetadata(rootUrl: string = DIGITALOCEAN_METADATA_URL, o: HttpOptions = {}): Datasource {
  const url = withSlash(rootUrl) + 'metadata/v1.json';
  let doc: Promise<DigitalOceanDoc> | undefined;
  const load = (oo: HttpOptions = o): Promise<DigitalOceanDoc> =>
    (doc ??= metaRequest(url, {}, oo).then((res) => {
      if (res.status !== 200) throw statusError(url, res, 'the droplet metadata');
      return parseDigitalOcean(res.body.toString('utf8'), url);
    })).catch((e: unknown) => {
      doc = undefined;
      throw e;
    });
  return {
    type: 'digitalocean-metadata-service',
    availabilityChanges: true,
    configRoot: withSlash(rootUrl) + 'metadata/',
    async isAvailable() {
      try {
        await load({ ...o, attempts: 1 });
        return true;
      } catch {
        return false;
      }
    },
    fetchUserdata: async () => new Uint8Array(Buffer.from((await load()).userdata, 'utf8')),
    fetchMetadata: async () => (await load()).metadata,
  };
}
