/**
 * azure: the Azure Instance Metadata Service (IMDS) for user data and
 * metadata, and the wireserver for the provisioning report, as afterburn's
 * Azure provider and WALinuxAgent do.
 *
 * IMDS (ROOT http://169.254.169.254/): every request carries `Metadata: true`
 * (IMDS answers 400 without it). ROOT/metadata/instance?api-version=2021-02-01
 * is the instance document (compute.osProfile.computerName, compute.vmId,
 * compute.publicKeys[].keyData, network.interface[0].ipv4.ipAddress[0]);
 * ROOT/metadata/instance/compute/userData?api-version=2021-01-01&format=text
 * is the user data, base64. Custom data (the older mechanism) is only on the
 * provisioning CD-ROM, in ovf-env.xml: read from `ovfEnv` when given (a file
 * of a mounted provisioning medium), used when IMDS has no user data.
 *
 * Ready report (WIRE http://168.63.129.16/): GET WIRE/machine/?comp=goalstate
 * with `x-ms-version: 2012-11-30` gives the incarnation, container id and role
 * instance id; POST WIRE/machine/?comp=health with a Health document whose
 * state is Ready. A 409 or 410 (the goal state moved on) fetches the goal
 * state once more and reports again. Until the report, Azure counts the VM
 * as still provisioning (and fails it after about 20 minutes).
 * Side effects: network requests, reading `ovfEnv`.
 */
import { readFile } from 'node:fs/promises';
import { BasaltError } from '../../../common/src/errors.js';
import { CLOUDINIT_ERRORS } from '../errors.js';
import type { Datasource, HttpOptions, Log, Metadata } from './index.js';
import { metaRequest, statusError, withSlash } from './http-meta.js';

export const AZURE_IMDS_URL = 'http://169.254.169.254/';
export const AZURE_WIRESERVER_URL = 'http://168.63.129.16/';
export const IMDS_API_VERSION = '2021-02-01';
export const USERDATA_API_VERSION = '2021-01-01';
export const WIRESERVER_VERSION = '2012-11-30';
export const AGENT_NAME = 'basalt-cloudinit';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const at = (o: unknown, ...path: (string | number)[]): unknown => {
  let v: unknown = o;
  for (const p of path) v = typeof p === 'number' ? (Array.isArray(v) ? (v as unknown[])[p] : undefined) : isObj(v) ? v[p] : undefined;
  return v;
};
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** The IMDS instance document to metadata. Pure. */
export function parseAzureInstance(text: string, url: string): Metadata {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new BasaltError(CLOUDINIT_ERRORS.E_METADATA_FORMAT, `${url}: not JSON: ${(e as Error).message}`);
  }
  if (!isObj(doc) || !isObj(doc['compute'])) throw new BasaltError(CLOUDINIT_ERRORS.E_METADATA_FORMAT, `${url}: no "compute" object`);
  const md: Metadata = {};
  const id = str(at(doc, 'compute', 'vmId'));
  if (id) md.instanceId = id;
  const h = str(at(doc, 'compute', 'osProfile', 'computerName')) ?? str(at(doc, 'compute', 'name'));
  if (h) md.hostname = h;
  const priv = str(at(doc, 'network', 'interface', 0, 'ipv4', 'ipAddress', 0, 'privateIpAddress'));
  if (priv) md.privateIPv4 = priv;
  const pub = str(at(doc, 'network', 'interface', 0, 'ipv4', 'ipAddress', 0, 'publicIpAddress'));
  if (pub) md.publicIPv4 = pub;
  const keys = at(doc, 'compute', 'publicKeys');
  if (Array.isArray(keys)) {
    md.sshPublicKeys = keys.flatMap((k, i): [string, string][] => {
      const data = str(at(k, 'keyData'))?.trim();
      return data ? [[str(at(k, 'path')) ?? String(i), data]] : [];
    });
  }
  return md;
}

/** The CustomData of an ovf-env.xml (base64 in the document), decoded; empty when absent. Pure. */
export function parseOvfCustomData(xml: string): Buffer {
  const m = /<(?:[\w-]+:)?CustomData>([^<]*)<\/(?:[\w-]+:)?CustomData>/.exec(xml);
  return Buffer.from((m?.[1] ?? '').replace(/\s+/g, ''), 'base64');
}

export interface GoalState {
  incarnation: string;
  containerId: string;
  instanceId: string;
}

const xmlUnescape = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
const tag = (xml: string, name: string): string | undefined => {
  const v = new RegExp(`<${name}>\\s*([^<]*?)\\s*</${name}>`).exec(xml)?.[1];
  return v === undefined ? undefined : xmlUnescape(v);
};

/** The parts of a wireserver GoalState the health report needs. Pure. */
export function parseGoalState(xml: string, url: string): GoalState {
  const incarnation = tag(xml, 'Incarnation');
  const containerId = tag(xml, 'ContainerId');
  const instanceId = tag(xml, 'InstanceId');
  if (!incarnation || !containerId || !instanceId) {
    throw new BasaltError(CLOUDINIT_ERRORS.E_AZURE_READY, `${url}: the goal state lacks Incarnation, ContainerId or InstanceId`);
  }
  return { incarnation, containerId, instanceId };
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The Health document that reports the role instance Ready. Pure. */
export function renderReadyReport(g: GoalState): string {
  return [
    '<?xml version="1.0" encoding="utf-8"?>',
    '<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">',
    `  <GoalStateIncarnation>${xmlEscape(g.incarnation)}</GoalStateIncarnation>`,
    '  <Container>',
    `    <ContainerId>${xmlEscape(g.containerId)}</ContainerId>`,
    '    <RoleInstanceList>',
    '      <Role>',
    `        <InstanceId>${xmlEscape(g.instanceId)}</InstanceId>`,
    '        <Health>',
    '          <State>Ready</State>',
    '        </Health>',
    '      </Role>',
    '    </RoleInstanceList>',
    '  </Container>',
    '</Health>',
    '',
  ].join('\n');
}

export interface AzureOptions {
  /** The wireserver's root URL (default http://168.63.129.16/). */
  wireserver?: string;
  /** ovf-env.xml of the mounted provisioning medium, for custom data. */
  ovfEnv?: string;
}

export interface AzureDatasource extends Datasource {
  /** Tells the wireserver the VM is provisioned. Side effects: two or four requests. */
  reportReady(): Promise<void>;
}

export function azureImds(rootUrl: string = AZURE_IMDS_URL, a: AzureOptions = {}, o: HttpOptions = {}, log: Log = () => {}): AzureDatasource {
  const root = withSlash(rootUrl) + 'metadata/';
  const wire = withSlash(a.wireserver ?? AZURE_WIRESERVER_URL) + 'machine/';
  const imds = async (path: string, what: string, oo: HttpOptions = o): Promise<string | null> => {
    const url = root + path;
    const res = await metaRequest(url, { headers: { Metadata: 'true' } }, oo);
    if (res.status === 200) return res.body.toString('utf8');
    if (res.status === 404) return null;
    throw statusError(url, res, what);
  };
  const goalState = async (): Promise<GoalState> => {
    const url = wire + '?comp=goalstate';
    const res = await metaRequest(url, { headers: { 'x-ms-version': WIRESERVER_VERSION } }, o);
    if (res.status !== 200) throw new BasaltError(CLOUDINIT_ERRORS.E_AZURE_READY, `${url}: HTTP ${res.status} for the goal state`, { details: { status: res.status } });
    return parseGoalState(res.body.toString('utf8'), url);
  };
  const postReady = async (g: GoalState): Promise<number> => {
    const res = await metaRequest(
      wire + '?comp=health',
      {
        method: 'POST',
        headers: { 'x-ms-version': WIRESERVER_VERSION, 'x-ms-agent-name': AGENT_NAME, 'content-type': 'text/xml;charset=utf-8' },
        body: renderReadyReport(g),
      },
      o,
    );
    return res.status;
  };
  return {
    type: 'azure-imds',
    availabilityChanges: true,
    configRoot: root,
    async isAvailable() {
      try {
        return (await imds(`instance?api-version=${IMDS_API_VERSION}`, 'the instance metadata', { ...o, attempts: 1 })) !== null;
      } catch {
        return false;
      }
    },
    async fetchUserdata() {
      const b64 = await imds(`instance/compute/userData?api-version=${USERDATA_API_VERSION}&format=text`, 'the user data');
      const user = Buffer.from((b64 ?? '').trim(), 'base64');
      if (user.length > 0 || !a.ovfEnv) return new Uint8Array(user);
      let xml: string;
      try {
        xml = await readFile(a.ovfEnv, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Uint8Array(0);
        throw e;
      }
      log(`No user data in IMDS: using the custom data of ${a.ovfEnv}`);
      return new Uint8Array(parseOvfCustomData(xml));
    },
    async fetchMetadata() {
      const url = root + `instance?api-version=${IMDS_API_VERSION}`;
      const text = await imds(`instance?api-version=${IMDS_API_VERSION}`, 'the instance metadata');
      return text === null ? {} : parseAzureInstance(text, url);
    },
    async reportReady() {
      let g = await goalState();
      let status = await postReady(g);
      if (status === 409 || status === 410) {
        log(`${wire}?comp=health: HTTP ${status}, the goal state moved on; reporting again`);
        g = await goalState();
        status = await postReady(g);
      }
      if (status !== 200) throw new BasaltError(CLOUDINIT_ERRORS.E_AZURE_READY, `${wire}?comp=health: HTTP ${status} for the ready report`, { details: { status } });
      log(`Reported ready to the Azure wireserver (incarnation ${g.incarnation})`);
    },
  };
}
