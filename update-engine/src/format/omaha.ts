/**
 * Omaha v3 messages as CoreOS's update_engine sends and reads them
 * (omaha_request_action.cc, go-omaha protocol.go). Pure: build and parse only.
 */
import { BasaltError } from '../../../common/src/errors.js';
import { el, kid, kids, parseXml, type XmlElement, type XmlLimits, defaultXmlLimits } from './xml.js';
import { UE_ERRORS } from '../errors.js';

/** CoreOS Container Linux's Omaha app id; Basalt keeps it so existing tooling recognises requests. */
export const UPDATER_VERSION = 'update_engine-0.4.10';

export const EventType = { UpdateComplete: 3, UpdateDownloadStarted: 13, UpdateDownloadFinished: 14 } as const;
export const EventResult = { Error: 0, Success: 1, SuccessReboot: 2, UpdateDeferred: 9 } as const;

/** update_engine's ActionExitCode values used in event error codes. */
export const ErrorCode = {
  Success: 0,
  Error: 1,
  OmahaRequestError: 2,
  OmahaResponseHandlerError: 3,
  PostinstallRunnerError: 5,
  InstallDeviceOpenError: 7,
  DownloadTransferError: 9,
  PayloadHashMismatchError: 10,
  PayloadSizeMismatchError: 11,
  DownloadPayloadVerificationError: 12,
  DownloadWriteError: 14,
  NewRootfsVerificationError: 15,
  DownloadPayloadPubKeyVerificationError: 18,
  DownloadOperationHashMismatch: 29,
  OmahaRequestXMLParseError: 31,
  OmahaResponseInvalid: 34,
  OmahaUpdateIgnoredPerPolicy: 35,
  OmahaErrorInHTTPResponse: 37,
  /** Reported with event 3/0 after the bootloader fell back from a new slot. */
  RollbackDetected: 44,
  /** Added to the code when the download was resumed. */
  ResumedFlag: 1 << 30,
  /** HTTP errors are reported as 2000 + status. */
  HttpBase: 2000,
} as const;

export interface OmahaEvent {
  type: number;
  result: number;
  errorCode?: number | undefined;
  previousVersion?: string | undefined;
}

export interface AppRequest {
  appId: string;
  version: string;
  track: string;
  board: string;
  machineId: string;
  bootId: string;
  oem: string;
  oemVersion: string;
  alephVersion: string;
  ping: boolean;
  updateCheck: boolean;
  events: OmahaEvent[];
  /** The client can take a delta from its version (delta_okay="true"). */
  deltaOkay?: boolean;
}

export interface OmahaRequest {
  protocol: string;
  installSource: string;
  os: { version: string; platform: string; sp: string };
  apps: AppRequest[];
}

/** Builds a request body exactly shaped like CoreOS update_engine's. */
export function buildRequest(r: { installSource: 'scheduler' | 'ondemandupdate'; app: AppRequest; arch?: string }): string {
  const a = r.app;
  const body: string[] = [];
  if (a.ping) body.push(el('ping', { active: 1 }));
  if (a.updateCheck) body.push(el('updatecheck', {}));
  for (const e of a.events) {
    body.push(el('event', { eventtype: e.type, eventresult: e.result, errorcode: e.errorCode, previousversion: e.previousVersion }));
  }
  const app = el(
    'app',
    {
      appid: a.appId,
      version: a.version,
      track: a.track,
      bootid: a.bootId,
      oem: a.oem,
      oemversion: a.oemVersion,
      alephversion: a.alephVersion,
      machineid: a.machineId,
      machinealias: '',
      lang: 'en-US',
      board: a.board,
      hardware_class: '',
      delta_okay: a.deltaOkay ? 'true' : 'false',
    },
    body.length ? body : [''],
  );
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    el('request', { protocol: '3.0', version: UPDATER_VERSION, updaterversion: UPDATER_VERSION, installsource: r.installSource, ismachine: 1 }, [
      el('os', { version: 'Chateau', platform: 'CoreOS', sp: `${a.version}_${r.arch ?? 'x86_64'}` }, ['']),
      app,
    ]) +
    '\n'
  );
}

function int(v: string | undefined, what: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (!/^-?\d{1,12}$/.test(v)) throw new BasaltError(UE_ERRORS.E_OMAHA_INVALID, `Omaha request: ${what} '${v}' is not an integer`);
  return Number(v);
}

/** Parses a request body (bounded, no entities). Throws E_XML_* / E_OMAHA_INVALID. */
export function parseRequest(body: string, limits: XmlLimits = defaultXmlLimits): OmahaRequest {
  const root = parseXml(body, limits);
  if (root.name !== 'request') throw new BasaltError(UE_ERRORS.E_OMAHA_INVALID, `Omaha request: root element is <${root.name}>, not <request>`);
  const protocol = root.attrs['protocol'] ?? '';
  if (protocol !== '3.0') throw new BasaltError(UE_ERRORS.E_OMAHA_PROTOCOL, `Omaha request: protocol '${protocol}' is not 3.0`);
  const os = kid(root, 'os');
  return {
    protocol,
    installSource: root.attrs['installsource'] ?? '',
    os: { version: os?.attrs['version'] ?? '', platform: os?.attrs['platform'] ?? '', sp: os?.attrs['sp'] ?? '' },
    apps: kids(root, 'app').map((a) => ({
      appId: (a.attrs['appid'] ?? '').toLowerCase(),
      version: a.attrs['version'] ?? '',
      track: a.attrs['track'] ?? '',
      board: a.attrs['board'] ?? '',
      machineId: a.attrs['machineid'] ?? '',
      bootId: a.attrs['bootid'] ?? '',
      oem: a.attrs['oem'] ?? '',
      oemVersion: a.attrs['oemversion'] ?? '',
      alephVersion: a.attrs['alephversion'] ?? '',
      deltaOkay: a.attrs['delta_okay'] === 'true',
      ping: kids(a, 'ping').length > 0,
      updateCheck: kids(a, 'updatecheck').length > 0,
      events: kids(a, 'event').map((e) => ({
        type: int(e.attrs['eventtype'], 'eventtype') ?? 0,
        result: int(e.attrs['eventresult'], 'eventresult') ?? 0,
        errorCode: int(e.attrs['errorcode'], 'errorcode'),
        previousVersion: e.attrs['previousversion'],
      })),
    })),
  };
}

export interface UpdateOffer {
  version: string;
  /** Base URLs; the package name is appended to each. */
  codebases: string[];
  packageName: string;
  size: number;
  sha1Base64: string;
  sha256Hex: string;
  /** Omaha's postinstall action sha256: base64 of the payload's SHA-256. */
  sha256Base64: string;
  /** Where the signed payload manifest sits, relative to the codebase (a Basalt extension attribute). */
  manifestName: string;
}

export interface AppResponse {
  appId: string;
  status: 'ok' | 'error-unknownApplication';
  ping: boolean;
  events: number;
  updateCheck?: { status: 'noupdate' | 'ok' | 'error-internal'; offer?: UpdateOffer; pollInterval?: number };
}

/**
 * The HTTP status of an answer, as go-omaha's handler picks it: 200 when any
 * app is ok; otherwise from the first app's error (400, or 500 for an internal
 * error); 400 for a request without apps. Pure.
 */
export function omahaHttpStatus(apps: Pick<AppResponse, 'status'>[]): 200 | 400 | 500 {
  if (apps.some((a) => a.status === 'ok')) return 200;
  const first = apps[0];
  return first && (first.status as string) === 'error-internal' ? 500 : 400;
}

/** Builds a response body as go-omaha / Nebraska shape it. */
export function buildResponse(apps: AppResponse[], elapsedSeconds: number): string {
  const appEls = apps.map((a) => {
    const kidsOut: string[] = [];
    for (let i = 0; i < a.events; i++) kidsOut.push(el('event', { status: 'ok' }));
    if (a.ping) kidsOut.push(el('ping', { status: 'ok' }));
    const u = a.updateCheck;
    if (u) {
      if (u.status === 'ok' && u.offer) {
        const o = u.offer;
        kidsOut.push(
          el('updatecheck', { status: 'ok', PollInterval: u.pollInterval }, [
            el('urls', {}, o.codebases.map((c) => el('url', { codebase: c }))),
            el('manifest', { version: o.version }, [
              el('packages', {}, [el('package', { name: o.packageName, hash: o.sha1Base64, hash_sha256: o.sha256Hex, size: o.size, required: 'true' })]),
              el('actions', {}, [
                el('action', {
                  event: 'postinstall',
                  sha256: o.sha256Base64,
                  needsadmin: 'false',
                  IsDeltaPayload: 'false',
                  DisablePayloadBackoff: 'true',
                  MetadataManifest: o.manifestName,
                }),
              ]),
            ]),
          ]),
        );
      } else kidsOut.push(el('updatecheck', { status: u.status, PollInterval: u.pollInterval }));
    }
    return el('app', { appid: a.appId, status: a.status }, kidsOut);
  });
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + el('response', { protocol: '3.0', server: 'basalt' }, [el('daystart', { elapsed_seconds: elapsedSeconds }), ...appEls]) + '\n';
}

export interface CheckResult {
  status: 'noupdate' | 'ok';
  offer?: UpdateOffer;
  pollInterval?: number;
}

/** Parses a response as update_engine's ParseResponse does. Throws E_OMAHA_RESPONSE (error 34) on anything but noupdate/ok. */
export function parseResponse(body: string, appId: string): CheckResult {
  let root: XmlElement;
  try {
    root = parseXml(body);
  } catch (e) {
    throw new BasaltError(UE_ERRORS.E_OMAHA_RESPONSE, `Omaha response is not valid XML: ${(e as Error).message}`, { details: { errorCode: ErrorCode.OmahaRequestXMLParseError } });
  }
  const app = kids(root, 'app').find((a) => (a.attrs['appid'] ?? '').toLowerCase() === appId.toLowerCase()) ?? kid(root, 'app');
  if (root.name !== 'response' || !app) throw new BasaltError(UE_ERRORS.E_OMAHA_RESPONSE, 'Omaha response has no <app>', { details: { errorCode: ErrorCode.OmahaResponseInvalid } });
  if (app.attrs['status'] && app.attrs['status'] !== 'ok') {
    throw new BasaltError(UE_ERRORS.E_OMAHA_RESPONSE, `Omaha server answered app status '${app.attrs['status']}'`, { details: { errorCode: ErrorCode.OmahaResponseInvalid } });
  }
  const uc = kid(app, 'updatecheck');
  const status = uc?.attrs['status'];
  const pi = uc?.attrs['PollInterval'];
  const pollInterval = pi && /^\d+$/.test(pi) ? Number(pi) : undefined;
  if (status === 'noupdate') return { status, ...(pollInterval ? { pollInterval } : {}) };
  if (status !== 'ok') {
    throw new BasaltError(UE_ERRORS.E_OMAHA_RESPONSE, `Omaha updatecheck status '${status ?? '(none)'}'`, { details: { errorCode: ErrorCode.OmahaResponseInvalid } });
  }
  const manifest = kid(uc, 'manifest');
  const pkg = kid(kid(manifest, 'packages'), 'package');
  const action = kids(kid(manifest, 'actions'), 'action').find((a) => a.attrs['event'] === 'postinstall');
  const codebases = kids(kid(uc, 'urls'), 'url')
    .map((u) => u.attrs['codebase'] ?? '')
    .filter((c) => c !== '');
  const size = Number(pkg?.attrs['size'] ?? '0');
  const version = manifest?.attrs['version'] ?? '';
  if (!pkg || !action?.attrs['sha256'] || !(size > 0) || !version || codebases.length === 0) {
    throw new BasaltError(UE_ERRORS.E_OMAHA_RESPONSE, 'Omaha response lacks manifest version, package size, urls or the postinstall sha256', { details: { errorCode: ErrorCode.OmahaResponseInvalid } });
  }
  const sha256Hex = payloadSha256(pkg.attrs['hash_sha256'], action.attrs['sha256']);
  return {
    status,
    ...(pollInterval ? { pollInterval } : {}),
    offer: {
      version,
      // update_engine appends the package name to the codebase: a codebase without its '/' is a folder all the same.
      codebases: codebases.map((c) => (c.endsWith('/') ? c : c + '/')),
      packageName: pkg.attrs['name'] ?? '',
      size,
      sha1Base64: pkg.attrs['hash'] ?? '',
      sha256Hex,
      sha256Base64: Buffer.from(sha256Hex, 'hex').toString('base64'),
      manifestName: action.attrs['MetadataManifest'] ?? 'manifest.json',
    },
  };
}

/**
 * The Omaha error an error answer carries (go-omaha and basalt serve answer an
 * unknown app with HTTP 400 and the response as body): "app ID: STATUS" or
 * "updatecheck: STATUS", for the first status that is not ok; undefined when
 * the body says none (or is not Omaha XML). Bounded: the body was capped. Pure.
 */
export function omahaErrorOf(body: string): string | undefined {
  let root: XmlElement;
  try {
    root = parseXml(body);
  } catch {
    return undefined;
  }
  if (root.name !== 'response') return undefined;
  const clean = (v: string) => v.replace(/[^\w.{}:-]/g, '').slice(0, 64);
  for (const a of kids(root, 'app')) {
    const st = a.attrs['status'];
    if (st && st !== 'ok') return `app ${clean(a.attrs['appid'] ?? '?')}: ${clean(st)}`;
    const uc = kid(a, 'updatecheck')?.attrs['status'];
    if (uc && uc !== 'ok' && uc !== 'noupdate') return `updatecheck: ${clean(uc)}`;
  }
  return undefined;
}

/**
 * A SHA-256 as Omaha servers write it: hex (Basalt, update_engine's hash_sha256) or base64
 * (go-omaha and Nebraska's hash_sha256, every server's postinstall sha256). Undefined when neither.
 */
export function sha256ToHex(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return t.toLowerCase();
  // Base64 of 32 bytes: 43 characters and one '=' (or none), standard or URL-safe alphabet.
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) return Buffer.from(t, 'base64').toString('hex');
  return undefined;
}

/** The payload's SHA-256 from package@hash_sha256 and the postinstall action's sha256: either form, and both agree. */
function payloadSha256(pkgHash: string | undefined, actionHash: string | undefined): string {
  const a = sha256ToHex(pkgHash);
  const b = sha256ToHex(actionHash);
  const bad = (what: string) => new BasaltError(UE_ERRORS.E_OMAHA_RESPONSE, `Omaha response: ${what}`, { details: { errorCode: ErrorCode.OmahaResponseInvalid } });
  if (pkgHash !== undefined && a === undefined) throw bad(`package hash_sha256 '${pkgHash.slice(0, 80)}' is neither 64 hex digits nor base64 of 32 bytes`);
  if (actionHash !== undefined && b === undefined) throw bad(`postinstall sha256 '${actionHash.slice(0, 80)}' is neither 64 hex digits nor base64 of 32 bytes`);
  if (a !== undefined && b !== undefined && a !== b) throw bad('package hash_sha256 and the postinstall sha256 name different payloads');
  const h = a ?? b;
  if (h === undefined) throw bad('no SHA-256 of the payload');
  return h;
}
