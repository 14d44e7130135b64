/**
 * aws: the EC2 instance metadata service (IMDS) with IMDSv2 session tokens.
 *
 * Token flow: PUT ROOT/latest/api/token with `X-aws-ec2-metadata-token-ttl-seconds`
 * gives a token; every GET carries it in `X-aws-ec2-metadata-token`. A GET
 * answered 401 (the token expired or was never accepted) gets one new token
 * and one more try, then fails with E_IMDS_TOKEN.
 *
 * IMDSv1 fallback, decided here: only when the token PUT gets an HTTP answer
 * saying the service has no token endpoint (403, 404 or 405, as EC2-compatible
 * services without IMDSv2 answer). A transport failure or 5xx on the PUT is
 * retried like any other request, never a reason to drop the token (afterburn
 * falls back on any failure; an instance with a PUT hop limit of 1 behind a
 * bridge would then silently use v1). A 400 is a fault in the request and
 * fails. An instance that requires tokens answers v1 requests 401, which
 * fails with E_IMDS_TOKEN.
 *
 * Read: latest/user-data; latest/meta-data/{instance-id, local-hostname,
 * public-keys/ (ID=NAME) and public-keys/ID/openssh-key, local-ipv4,
 * public-ipv4}. Side effects: network requests.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { CLOUDINIT_ERRORS } from '../errors.js';
import type { Datasource, HttpOptions, Log, Metadata } from './index.js';
import { metaRequest, statusError, withSlash, type MetaReply } from './http-meta.js';

export const AWS_IMDS_URL = 'http://169.254.169.254/';
/** Six hours, the longest TTL IMDS grants. */
export const TOKEN_TTL_SECONDS = 21600;
export const TOKEN_TTL_HEADER = 'x-aws-ec2-metadata-token-ttl-seconds';
export const TOKEN_HEADER = 'x-aws-ec2-metadata-token';

/** The listing of public-keys/: "0=my-key" lines to [id, name]. Pure. */
export function parseKeyListing(text: string, url: string): [string, string][] {
  const out: [string, string][] = [];
  for (const line of text.split('\n').map((l) => l.replace(/\r$/, ''))) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new BasaltError(CLOUDINIT_ERRORS.E_METADATA_FORMAT, `${url}: malformed public key entry ${JSON.stringify(line)} (want ID=NAME)`);
    out.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return out;
}

export function awsImds(rootUrl: string = AWS_IMDS_URL, o: HttpOptions = {}, log: Log = () => {}): Datasource {
  const root = withSlash(rootUrl) + 'latest/';
  /** undefined: not asked yet; null: IMDSv1 (the service has no token endpoint). */
  let token: string | null | undefined;

  /** isAvailable's requests: one attempt each (selectDatasource polls again). */
  const probe: HttpOptions = { ...o, attempts: 1 };
  const fetchToken = async (oo: HttpOptions): Promise<string | null> => {
    const url = root + 'api/token';
    const res = await metaRequest(url, { method: 'PUT', headers: { [TOKEN_TTL_HEADER]: String(TOKEN_TTL_SECONDS) } }, oo);
    if (res.status === 200) {
      const t = res.body.toString('utf8').trim();
      if (t === '') throw new BasaltError(CLOUDINIT_ERRORS.E_IMDS_TOKEN, `${url}: the token is empty`);
      return t;
    }
    if (res.status === 403 || res.status === 404 || res.status === 405) {
      log(`IMDSv2 token refused by ${url} (HTTP ${res.status}): using IMDSv1`);
      return null;
    }
    throw new BasaltError(CLOUDINIT_ERRORS.E_IMDS_TOKEN, `${url}: HTTP ${res.status} for the IMDSv2 token request`, { details: { status: res.status } });
  };

  const getOnce = async (url: string, oo: HttpOptions): Promise<MetaReply> => {
    token ??= await fetchToken(oo);
    return metaRequest(url, { headers: token === null ? {} : { [TOKEN_HEADER]: token } }, oo);
  };

  /** The body of `path` under latest/, or null on 404. */
  const get = async (path: string, oo: HttpOptions = o): Promise<Buffer | null> => {
    const url = root + path;
    let res = await getOnce(url, oo);
    if (res.status === 401 && token !== null) {
      log(`${url}: IMDSv2 token not accepted (HTTP 401), asking for a new one`);
      token = undefined;
      res = await getOnce(url, oo);
    }
    if (res.status === 200) return res.body;
    if (res.status === 404) return null;
    if (res.status === 401) {
      const why = token === null ? 'the service requires IMDSv2 tokens but refused to issue one' : 'a fresh IMDSv2 token was refused too';
      throw new BasaltError(CLOUDINIT_ERRORS.E_IMDS_TOKEN, `${url}: HTTP 401: ${why}`, { details: { status: 401 } });
    }
    throw statusError(url, res, path);
  };
  const text = async (path: string) => (await get(path))?.toString('utf8').split('\n')[0]?.trim() ?? null;

  return {
    type: 'aws-imds',
    availabilityChanges: true,
    configRoot: root,
    async isAvailable() {
      try {
        return (await get('meta-data/instance-id', probe)) !== null;
      } catch {
        token = undefined;
        return false;
      }
    },
    fetchUserdata: async () => new Uint8Array((await get('user-data')) ?? Buffer.alloc(0)),
    async fetchMetadata(): Promise<Metadata> {
      const md: Metadata = {};
      const id = await text('meta-data/instance-id');
      if (id) md.instanceId = id;
      const h = await text('meta-data/local-hostname');
      if (h) md.hostname = h.split(' ')[0]!;
      const l = await text('meta-data/local-ipv4');
      if (l) md.privateIPv4 = l;
      const p = await text('meta-data/public-ipv4');
      if (p) md.publicIPv4 = p;
      const listing = await get('meta-data/public-keys/');
      if (listing) {
        const keys: [string, string][] = [];
        for (const [kid, name] of parseKeyListing(listing.toString('utf8'), root + 'meta-data/public-keys/')) {
          const key = await text(`meta-data/public-keys/${kid}/openssh-key`);
          if (key) keys.push([name, key]);
          log(`Found SSH key for "${name}"`);
        }
        md.sshPublicKeys = keys;
      }
      return md;
    },
  };
}
