/**
 * gce: the GCE metadata server, ROOT/computeMetadata/v1/ (ROOT
 * http://metadata.google.internal/). Every request carries
 * `Metadata-Flavor: Google` (the server answers 403 without it) and every
 * answer must carry it back: one without it did not come from the metadata
 * server and is refused (E_METADATA_FLAVOR).
 *
 * Read: instance/attributes/user-data; instance/id, instance/hostname,
 * instance/network-interfaces/0/ip and .../access-configs/0/external-ip;
 * SSH keys from instance/attributes/ssh-keys (and the legacy sshKeys) and
 * project/attributes/ssh-keys unless instance/attributes/block-project-ssh-keys
 * is "true". Side effects: network requests.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { CLOUDINIT_ERRORS } from '../errors.js';
import type { Datasource, HttpOptions, Log, Metadata } from './index.js';
import { metaRequest, statusError, withSlash } from './http-meta.js';

export const GCE_METADATA_URL = 'http://metadata.google.internal/';
export const FLAVOR_HEADER = 'metadata-flavor';

/**
 * The keys of a GCE `ssh-keys` attribute, one `USER:KEY` per line (KEY may end
 * in `google-ssh {"userName":…,"expireOn":…}`), as [user, key]. Lines without
 * a user or a key are skipped. Pure.
 */
export function parseGceSshKeys(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const user = line.slice(0, colon);
    const key = line.slice(colon + 1).trim();
    if (key === '' || !/^[a-z0-9][\w.-]*$/i.test(user)) continue;
    out.push([user, key]);
  }
  return out;
}

export function gceMetadata(rootUrl: string = GCE_METADATA_URL, o: HttpOptions = {}, log: Log = () => {}): Datasource {
  const root = withSlash(rootUrl) + 'computeMetadata/v1/';
  /** The text of `path`, or null on 404. */
  const get = async (path: string, oo: HttpOptions = o): Promise<string | null> => {
    const url = root + path;
    const res = await metaRequest(url, { headers: { 'Metadata-Flavor': 'Google' } }, oo);
    if (res.headers[FLAVOR_HEADER] !== 'Google') {
      throw new BasaltError(CLOUDINIT_ERRORS.E_METADATA_FLAVOR, `${url}: HTTP ${res.status} without the header Metadata-Flavor: Google`);
    }
    if (res.status === 200) return res.body.toString('utf8');
    if (res.status === 404) return null;
    throw statusError(url, res, path);
  };
  return {
    type: 'gce-metadata',
    availabilityChanges: true,
    configRoot: root,
    async isAvailable() {
      try {
        return (await get('instance/id', { ...o, attempts: 1 })) !== null;
      } catch {
        return false;
      }
    },
    fetchUserdata: async () => new Uint8Array(Buffer.from((await get('instance/attributes/user-data')) ?? '', 'utf8')),
    async fetchMetadata(): Promise<Metadata> {
      const md: Metadata = {};
      const id = await get('instance/id');
      if (id) md.instanceId = id.trim();
      const h = await get('instance/hostname');
      if (h) md.hostname = h.trim();
      const ip = await get('instance/network-interfaces/0/ip');
      if (ip) md.privateIPv4 = ip.trim();
      const ext = await get('instance/network-interfaces/0/access-configs/0/external-ip');
      if (ext?.trim()) md.publicIPv4 = ext.trim();
      const keys: [string, string][] = [];
      for (const attr of ['ssh-keys', 'sshKeys']) keys.push(...parseGceSshKeys((await get(`instance/attributes/${attr}`)) ?? ''));
      const block = (await get('instance/attributes/block-project-ssh-keys'))?.trim().toLowerCase() === 'true';
      if (block) log('block-project-ssh-keys is set: project SSH keys left out');
      else keys.push(...parseGceSshKeys((await get('project/attributes/ssh-keys')) ?? ''));
      for (const [user] of keys) log(`Found SSH key for "${user}"`);
      if (keys.length > 0) md.sshPublicKeys = keys;
      return md;
    },
  };
}
