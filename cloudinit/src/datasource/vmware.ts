/**
 * vmware: guestinfo variables, read with `vmware-rpctool "info-get guestinfo.KEY"`
 * (open-vm-tools; exit 1 and "No value found" when the key is not set), the
 * keys coreos-cloudinit v1.14.0's vmware datasource reads:
 *
 * - guestinfo.coreos.config.data, with guestinfo.coreos.config.data.encoding
 *   "" (plain), "base64"/"b64" or "gzip+base64"/"gz+b64";
 * - guestinfo.coreos.config.url when there is no data (fetched over HTTP);
 * - guestinfo.hostname, guestinfo.interface.0.ip.0.address (ADDR/PREFIX).
 *
 * The tool runs through common/src/exec.ts; `rpctool` names it (a path or a
 * tool name, BASALT_TOOL_VMWARE_RPCTOOL overrides the default), so tests run a
 * stub script. Side effects: runs the tool, and a request for config.url.
 */
import { gunzipSync } from 'node:zlib';
import { BasaltError } from '../../../common/src/errors.js';
import { run } from '../../../common/src/exec.js';
import { CLOUDINIT_ERRORS } from '../errors.js';
import { httpGetRetry, type Datasource, type HttpOptions, type Metadata } from './index.js';

export const RPCTOOL = 'vmware-rpctool';

/** Decodes guestinfo.coreos.config.data by its encoding. Pure. */
export function decodeGuestinfo(data: string, encoding: string): Buffer {
  const enc = encoding.trim();
  const b64 = () => {
    const s = data.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new BasaltError(CLOUDINIT_ERRORS.E_GUESTINFO, `guestinfo.coreos.config.data is not base64 (encoding ${JSON.stringify(enc)})`);
    return Buffer.from(s, 'base64');
  };
  switch (enc) {
    case '':
      return Buffer.from(data, 'utf8');
    case 'base64':
    case 'b64':
      return b64();
    case 'gzip+base64':
    case 'gz+b64':
      try {
        return gunzipSync(b64());
      } catch (e) {
        if (e instanceof BasaltError) throw e;
        throw new BasaltError(CLOUDINIT_ERRORS.E_GUESTINFO, `guestinfo.coreos.config.data is not gzip data: ${(e as Error).message}`);
      }
    default:
      throw new BasaltError(CLOUDINIT_ERRORS.E_GUESTINFO, `guestinfo.coreos.config.data.encoding ${JSON.stringify(enc)} is not one of "", base64, b64, gzip+base64, gz+b64`);
  }
}

export interface VmwareOptions {
  /** The vmware-rpctool program (default: the tool table's vmware-rpctool). */
  rpctool?: string;
  http?: HttpOptions;
}

export function vmwareGuestinfo(v: VmwareOptions = {}): Datasource {
  const tool = v.rpctool ?? RPCTOOL;
  /** The value of guestinfo.KEY without its final newline, or null when not set. */
  const info = async (key: string): Promise<string | null> => {
    const r = await run(tool, [`info-get guestinfo.${key}`], { reject: false, timeoutMs: 10_000 });
    if (r.exitCode !== 0) return null;
    return r.stdout.replace(/\n$/, '');
  };
  return {
    type: 'vmware',
    availabilityChanges: false,
    configRoot: '',
    async isAvailable() {
      try {
        return (await info('coreos.config.data')) !== null || (await info('coreos.config.url')) !== null;
      } catch {
        return false; // no vmware-rpctool, or not under VMware
      }
    },
    async fetchUserdata() {
      const data = await info('coreos.config.data');
      if (data !== null) return new Uint8Array(decodeGuestinfo(data, (await info('coreos.config.data.encoding')) ?? ''));
      const url = await info('coreos.config.url');
      return url ? httpGetRetry(url.trim(), v.http ?? {}) : new Uint8Array(0);
    },
    async fetchMetadata(): Promise<Metadata> {
      const md: Metadata = {};
      const h = await info('hostname');
      if (h?.trim()) md.hostname = h.trim();
      const addr = (await info('interface.0.ip.0.address'))?.trim().split('/')[0];
      if (addr) md[addr.includes(':') ? 'publicIPv6' : 'publicIPv4'] = addr;
      return md;
    },
  };
}
