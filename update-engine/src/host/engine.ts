/**
 * The update engine: runs the pure state machine (machine.ts), executes its
 * effects (Omaha or static checks, events, download/verify/finalize into the
 * inactive slot), schedules checks, detects rollbacks after a boot, and keeps
 * its small state in a versioned JSON file. All I/O targets come from
 * EngineEnv so that an image file can stand in for a host.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Got } from 'got';
import { fetchText, httpClient, httpStatusOf, isTransferFailure, requestText, HTTP_ERRORS } from '../../../common/src/http.js';
import { BasaltError, isBasaltError, COMMON_ERRORS } from '../../../common/src/errors.js';
import type { Logger } from '../../../common/src/log.js';
import { readGpt, writeGpt, setSlotAttrs, findPartition, slotAttrs } from '../../../common/src/gpt/index.js';
import { parseEntryFileName } from '../../../common/src/boot.js';
import { step, initialState, isBusy, type Effect, type Event, type MachineState } from './machine.js';
import { afterCheck, nextDelay, type Clock, type SchedulerState, type SchedulerTimings } from './scheduler.js';
import { buildRequest, ErrorCode, EventResult, EventType, omahaErrorOf, parseResponse, type OmahaEvent, type UpdateOffer } from '../format/omaha.js';
import { defaultXmlLimits } from '../format/xml.js';
import { APP_ID, SLOT_PARTLABEL, STATIC_SERVER_PREFIX, otherSlot, slotKey, type SlotName } from '../../../common/src/contracts.js';
import { deltaDir, peekEnvelope, validateChannel, validateManifest, type ChannelMeta, type PayloadManifest } from '../format/metadata.js';
import { decideOffer, deltaOfferFromChannel, offerFromChannel } from '../format/offer.js';
import { refreshTrust } from '../trust/client.js';
import { channelRelease, checkBytes, checkChannelFile, checkManifestPayload, checkOffer, manifestTargetFor, nextStop, releaseManifest, releasePayload, repoUrlFromCodebase, type ChannelRelease, type TrustedTargets } from '../trust/decide.js';
import { downloadOffer, finalize, MAX_MANIFEST_BYTES, readProgress, verifySlot, progressPath, type ApplyDeps, type Identity } from './apply.js';
import type { HttpOptions } from './http.js';
import type { Esp } from './esp.js';
import { planSlots } from './slots.js';
import { writeFileAtomic } from '../../../common/src/fsutil.js';
import { UE_ERRORS } from '../errors.js';

export interface EngineEnv {
  disk: string;
  booted: SlotName;
  esp: Esp;
  stateDir: string;
  /** Unused since the TUF trust model (kept for old command lines). */
  keyringPath: string;
  /** The image's TUF root.json, copied into stateDir/tuf once. */
  tufRoot: string;
  /** The repository's root URL for TUF metadata; undefined: SERVER's (static) or derived from the Omaha codebase. */
  tufUrl?: string | undefined;
  /** Omaha URL, or static+URL for a static repository; undefined = updates disabled. */
  server: string | undefined;
  me: Identity;
  machineId: string;
  bootId: string;
  tries: number;
  http: HttpOptions;
  timings: SchedulerTimings;
  clock: Clock;
  rand: () => number;
  rebootRequiredPath: string;
  log: Logger;
  failpoint(name: string): void;
}

export interface PersistedState {
  formatVersion: 1;
  blocked: string[];
  /** An installed update waiting for its reboot. */
  pending?: { version: string; size: number; slot: SlotName; bootId: string; previousVersion: string } | undefined;
  /** Version we came from, reported once as event 3/2 after the new slot booted. */
  reportPrevious?: string | undefined;
  alephVersion?: string | undefined;
  rollbacks: { version: string; at: string }[];
  /**
   * Events that must reach the server (the rollback report). Written in the
   * same save that records the rollback, removed only after a server answered;
   * a restart or an unreachable server leaves them for the next attempt.
   */
  outbox?: OmahaEvent[] | undefined;
}

export interface Status extends MachineState {
  currentVersion: string;
  bootedSlot: SlotName;
  channel: string;
  server: string;
  blocked: string[];
}

/** The largest static channel file accepted. */
export const MAX_CHANNEL_BYTES = 1024 * 1024;

export class Engine {
  state: MachineState = initialState;
  private sched: SchedulerState = { checks: 0, serverErrors: 0 };
  private timer: { cancel(): void } | undefined;
  private ps: PersistedState = { formatVersion: 1, blocked: [], rollbacks: [] };
  private offer: UpdateOffer | undefined;
  private manifest: PayloadManifest | undefined;
  /** The client of the check, events and static channel files: each a small document, within http.documentMs as a whole. */
  private docClient: Got | undefined;
  /** The TUF targets verified by the last check, and the channel's release in them. */
  /** The verified targets of the offer being taken, and the version they allow it to be. */
  private trusted: { targets: TrustedTargets; release: ChannelRelease; version: string } | undefined;
  private work: Promise<void> = Promise.resolve();
  private listeners = new Set<(s: Status) => void>();
  private stopped = false;
  /** Last error of a finished run (for one-shot `apply`). */
  lastFailure: BasaltError | undefined;
  /** What the last check found: no update, an update (then installed or failed), or no answer. */
  lastCheck: 'noupdate' | 'offered' | 'failed' | undefined;

  constructor(readonly env: EngineEnv) {}

  private get http(): Got {
    const h = this.env.http;
    this.docClient ??= httpClient({ connectMs: Math.min(h.connectMs, h.documentMs), stallMs: Math.min(h.stallMs, h.documentMs), totalMs: h.documentMs });
    return this.docClient;
  }

  get statePath() {
    return join(this.env.stateDir, 'engine.json');
  }

  status(): Status {
    return { ...this.state, currentVersion: this.env.me.version, bootedSlot: this.env.booted, channel: this.env.me.channel, server: this.env.server ?? 'disabled', blocked: this.ps.blocked };
  }

  subscribe(fn: (s: Status) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Loads state, detects a rollback or a pending reboot. Call once. */
  async start(schedule: boolean): Promise<void> {
    try {
      // Whatever is on the disk: only a formatVersion 1 state is taken.
      const j = JSON.parse(await readFile(this.statePath, 'utf8')) as { formatVersion?: unknown };
      if (j.formatVersion === 1) this.ps = { ...this.ps, ...(j as PersistedState) };
    } catch {
      /* first start */
    }
    if (!this.ps.alephVersion) {
      // A new install: like update_engine, the first check reports previousversion="0.0.0.0".
      this.ps.alephVersion = this.env.me.version;
      this.ps.reportPrevious ??= '0.0.0.0';
      await this.save();
    }
    const p = this.ps.pending;
    if (p && p.slot !== this.env.booted && p.bootId === this.env.bootId) {
      this.send({ type: 'RESTORE_NEED_REBOOT', version: p.version, size: p.size });
    } else if (p && (await this.settlePending())) {
      this.send({ type: 'ROLLBACK_DETECTED', failedVersion: p.version });
      await this.idle();
      this.afterStart(schedule);
      return;
    }
    // A report an earlier run could not deliver (server down, restarted mid-send).
    if (this.ps.outbox?.length) {
      this.work = this.work.then(() => this.sendEvents([], false));
      await this.idle();
    }
    this.afterStart(schedule);
  }

  /**
   * What became of an installed update, judged from the GPT. The record stays
   * while the new slot is on its trial boot: only a slot the health gate marked
   * good (successful=1) ends it, and a trial boot that failed is seen as a
   * rollback from the old slot on a later boot. Returns true for a rollback
   * (already blocked and queued for the report).
   */
  private async settlePending(): Promise<boolean> {
    const p = this.ps.pending;
    if (!p) return false;
    const good = slotAttrs(findPartition(await readGpt(this.env.disk), SLOT_PARTLABEL[p.slot])).successful;
    if (p.slot === this.env.booted) {
      if (!good) {
        this.env.log.info(`trial boot of ${p.version} in ${SLOT_PARTLABEL[p.slot]}: waiting for the health gate to mark it good`);
        return false;
      }
      this.env.log.info(`${p.version} in ${SLOT_PARTLABEL[p.slot]} was marked good; the next check reports the update from ${p.previousVersion}`);
      this.ps.reportPrevious = p.previousVersion;
      this.ps.pending = undefined;
      await this.save();
      return false;
    }
    if (p.bootId === this.env.bootId) return false; // installed in this boot, not rebooted yet
    if (good) {
      // It came up and was marked good, and then someone went back (basalt update rollback).
      this.env.log.info(`${p.version} in ${SLOT_PARTLABEL[p.slot]} booted and was marked good before; back on ${SLOT_PARTLABEL[this.env.booted]} by choice, not a rollback`);
      this.ps.pending = undefined;
      await this.save();
      return false;
    }
    this.env.log.warn(`rollback: ${p.version} in ${SLOT_PARTLABEL[p.slot]} did not come up; running ${this.env.me.version} from ${SLOT_PARTLABEL[this.env.booted]}`);
    this.ps.rollbacks.push({ version: p.version, at: new Date(this.env.clock.now()).toISOString() });
    this.ps.pending = undefined;
    // Blocked and queued for the server in the same write as the rollback
    // itself: a restart from here on neither retries it nor loses the report.
    if (!this.ps.blocked.includes(p.version)) this.ps.blocked.push(p.version);
    this.ps.outbox = [...(this.ps.outbox ?? []), { type: EventType.UpdateComplete, result: EventResult.Error, errorCode: ErrorCode.RollbackDetected }];
    await this.save();
    return true;
  }

  private afterStart(schedule: boolean): void {
    if (schedule && this.env.server) this.scheduleNext(nextDelay(this.sched, this.env.timings, this.env.rand()));
    else if (schedule) this.env.log.info('automatic updates are off: no SERVER, or SERVER=disabled');
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  /** Whether a check or an install is under way. */
  busy(): boolean {
    return isBusy(this.state.status);
  }

  /**
   * Waits until the effects of all sent events have run. The wait keeps the
   * process alive: the clock's timers do not (a daemon lives on its sockets),
   * so a one-shot `apply` waiting out a retry's back-off would otherwise end,
   * with exit code 0, before it had installed anything.
   */
  async idle(): Promise<void> {
    const hold = setInterval(() => undefined, 2 ** 30);
    try {
      let w: Promise<void>;
      do {
        w = this.work;
        await w;
      } while (w !== this.work);
    } finally {
      clearInterval(hold);
    }
  }

  /** Feeds an event to the state machine; effects run in order in the background. Returns whether it applied. */
  send(e: Event): boolean {
    const r = step(this.state, e);
    if (!r.accepted) return false;
    this.state = r.state;
    // Watchers hear of a change at once: the queued effects may include a long
    // download, and a notification queued behind it would arrive too late and
    // show a later state.
    const rest = r.effects.filter((f) => f.do !== 'notify');
    if (rest.length < r.effects.length) this.notify();
    if (rest.length > 0) this.work = this.work.then(() => this.runEffects(rest));
    return true;
  }

  private notify(): void {
    const s = this.status();
    for (const l of this.listeners) {
      try {
        l(s);
      } catch (e) {
        this.env.log.debug(`a status watcher failed: ${(e as Error).message}`);
      }
    }
  }

  /** Starts a check now (update_engine_client -check_for_update). */
  check(interactive = true): boolean {
    if (!this.env.server) throw new BasaltError(UE_ERRORS.E_UPDATES_DISABLED, 'updates are disabled (no SERVER, or SERVER=disabled in update.conf)', { hint: 'set SERVER in /etc/coreos/update.conf' });
    return this.send({ type: 'CHECK', now: this.env.clock.now(), interactive });
  }

  private async save(): Promise<void> {
    await writeFileAtomic(this.statePath, JSON.stringify(this.ps, null, 1) + '\n');
  }

  private scheduleNext(ms: number): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.env.log.debug(`next update check in ${Math.round(ms / 1000)} s`);
    this.timer = this.env.clock.setTimeout(() => {
      this.timer = undefined;
      if (this.env.server) this.send({ type: 'CHECK', now: this.env.clock.now(), interactive: false });
    }, ms);
  }

  private async runEffects(effects: Effect[]): Promise<void> {
    for (const eff of effects) {
      try {
        await this.runEffect(eff);
      } catch (e) {
        const err = isBasaltError(e) ? e : new BasaltError(COMMON_ERRORS.E_INTERNAL, `internal error: ${String((e as Error | null | undefined)?.message)}`, { cause: e, details: { errorCode: ErrorCode.Error } });
        this.lastFailure = err;
        this.env.log.error(err.message);
        const code = typeof err.details['errorCode'] === 'number' ? err.details['errorCode'] : ErrorCode.Error;
        this.send({ type: 'FAILED', code: err.code, message: err.message, errorCode: code, version: this.offer?.version });
        this.send({ type: 'REPORTED' });
        return;
      }
    }
  }

  private deps(): ApplyDeps {
    return {
      disk: this.env.disk,
      plan: undefined as never,
      esp: this.env.esp,
      stateDir: this.env.stateDir,
      trustManifest: (url, text) => this.trustManifest(url, text),
      manifestMaxBytes: () => this.manifestMaxBytes(),
      http: this.env.http,
      me: this.env.me,
      blocked: this.ps.blocked,
      tries: this.env.tries,
      rebootRequiredPath: this.env.rebootRequiredPath,
      log: this.env.log,
      failpoint: (name) => {
        this.env.failpoint(name);
      },
      sleep: (ms) => new Promise((r) => this.env.clock.setTimeout(r, ms)),
      onDownloadStarted: (resumed) => {
        this.send({ type: 'DOWNLOAD_STARTED', resumed });
      },
      onProgress: (f) => {
        this.send({ type: 'PROGRESS', fraction: f });
      },
    };
  }

  private async runEffect(eff: Effect): Promise<void> {
    switch (eff.do) {
      case 'notify': // sent by send() as the state changes, never queued
        return;
      case 'omaha-check':
        await this.doCheck(eff.interactive);
        return;
      case 'omaha-event':
        await this.sendEvents(eff.type === 0 ? [] : [{ type: eff.type, result: eff.result, errorCode: eff.errorCode }], eff.type === 0);
        return;
      case 'download': {
        const d = { ...this.deps(), plan: await this.plan() };
        this.manifest = await downloadOffer(this.offer!, d);
        this.send({ type: 'DOWNLOADED' });
        return;
      }
      case 'verify':
        await verifySlot(this.manifest!, { ...this.deps(), plan: await this.plan() });
        this.send({ type: 'VERIFIED' });
        return;
      case 'finalize': {
        const plan = await this.plan();
        await finalize(this.manifest!, { ...this.deps(), plan }, await this.activeEntryText());
        this.ps.pending = { version: this.manifest!.version, size: this.manifest!.payload.size, slot: plan.target, bootId: this.env.bootId, previousVersion: this.env.me.version };
        await this.save();
        await rm(progressPath(this.env.stateDir), { force: true });
        this.env.failpoint('finalized');
        this.send({ type: 'FINALIZED' });
        return;
      }
      case 'reboot-needed':
        await writeFileAtomic(join(this.env.stateDir, 'update_engine_autoupdate_completed'), '');
        this.env.log.info(`update to ${this.state.newVersion} installed in ${SLOT_PARTLABEL[otherSlot(this.env.booted)]}; reboot to use it`);
        return;
      case 'clear-reboot-needed': {
        const plan = await this.plan();
        const gpt = await readGpt(this.env.disk);
        await writeGpt(this.env.disk, setSlotAttrs(gpt, plan.inactive.index, { priority: 0, tries: 0, successful: false }));
        await this.removeSlotEntries(plan.target);
        await rm(join(this.env.stateDir, 'update_engine_autoupdate_completed'), { force: true });
        await rm(this.env.rebootRequiredPath, { force: true });
        this.ps.pending = undefined;
        await this.save();
        return;
      }
      case 'block-version':
        if (!this.ps.blocked.includes(eff.version)) this.ps.blocked.push(eff.version);
        await this.save();
        return;
      case 'lower-failed-slot': {
        const failed = otherSlot(this.env.booted);
        const gpt = await readGpt(this.env.disk);
        await writeGpt(this.env.disk, setSlotAttrs(gpt, findPartition(gpt, SLOT_PARTLABEL[failed]).index, { priority: 0, tries: 0, successful: false }));
        await this.removeSlotEntries(failed);
        return;
      }
      case 'reported':
        this.send({ type: 'REPORTED' });
        return;
      case 'schedule': {
        this.sched = afterCheck(this.sched, eff.outcome, eff.pollInterval);
        this.scheduleNext(nextDelay(this.sched, this.env.timings, this.env.rand()));
        return;
      }
    }
  }

  private async removeSlotEntries(slot: SlotName): Promise<void> {
    for (const f of await this.env.esp.list('/loader/entries')) if (parseEntryFileName(f)?.slot === slotKey(slot)) await this.env.esp.remove(`/loader/entries/${f}`);
  }

  private async activeEntryText(): Promise<string | undefined> {
    for (const f of await this.env.esp.list('/loader/entries')) if (parseEntryFileName(f)?.slot === slotKey(this.env.booted)) return this.env.esp.read(`/loader/entries/${f}`);
    return undefined;
  }

  private async plan() {
    return planSlots(await readGpt(this.env.disk), this.env.booted);
  }

  private request(events: OmahaEvent[], check: boolean, interactive: boolean, ping = check): string {
    return buildRequest({
      installSource: interactive ? 'ondemandupdate' : 'scheduler',
      app: {
        appId: APP_ID,
        version: this.env.me.version,
        track: this.env.me.channel,
        board: this.env.me.board,
        machineId: this.env.machineId,
        bootId: `{${this.env.bootId}}`,
        oem: '',
        oemVersion: '',
        alephVersion: this.ps.alephVersion ?? this.env.me.version,
        ping,
        updateCheck: check,
        events,
        // A delta is taken when the running slot matches its seed, else the full payload it names.
        deltaOkay: true,
      },
    });
  }

  /** Posts an Omaha request; a non-2xx answer is E_HTTP_STATUS, naming the Omaha error its body gives (go-omaha: 400 with the answer). */
  private async post(body: string): Promise<string> {
    const url = this.env.server!;
    const r = await requestText(this.http, url, { method: 'POST', body, headers: { 'content-type': 'text/xml' }, maxBytes: defaultXmlLimits.maxBytes });
    if (r.status >= 200 && r.status <= 299) return r.text;
    const why = omahaErrorOf(r.text);
    throw new BasaltError(HTTP_ERRORS.E_HTTP_STATUS, `${url}: HTTP ${r.status}${why ? ` (${why})` : ''}`, { details: { status: r.status } });
  }

  /**
   * Sends `events` with whatever the outbox holds (each once). Best effort for
   * ordinary events; the outbox is emptied only after the server answered.
   */
  private async sendEvents(events: OmahaEvent[], pingOnly: boolean): Promise<void> {
    const srv = this.env.server;
    const all = this.withOutbox(events);
    if (!srv || srv.startsWith(STATIC_SERVER_PREFIX)) {
      for (const e of all) this.env.log.debug(`event ${e.type}/${e.result}${e.errorCode !== undefined ? ` errorcode ${e.errorCode}` : ''} (static mode: not reported)`);
      await this.clearOutbox(all);
      return;
    }
    if (all.length === 0 && !pingOnly) return;
    try {
      await this.post(this.request(all, false, false, pingOnly));
      await this.clearOutbox(all);
    } catch (e) {
      const kept = this.ps.outbox?.length ? ` (${this.ps.outbox.length} kept for the next attempt)` : '';
      this.env.log.warn(`cannot report event to ${srv}: ${(e as Error).message}${kept}`);
    }
  }

  private withOutbox(events: OmahaEvent[]): OmahaEvent[] {
    const out = [...(this.ps.outbox ?? [])];
    for (const e of events) if (!out.some((o) => sameEvent(o, e))) out.push(e);
    return out;
  }

  private async clearOutbox(sent: OmahaEvent[]): Promise<void> {
    const box = this.ps.outbox;
    if (!box?.length) return;
    this.ps.outbox = box.filter((o) => !sent.some((e) => sameEvent(o, e)));
    if (this.ps.outbox.length === 0) this.ps.outbox = undefined;
    await this.save();
  }

  private async doCheck(interactive: boolean): Promise<void> {
    const srv = this.env.server!;
    const now = this.env.clock.now();
    this.lastCheck = undefined;
    this.trusted = undefined;
    let result: { status: 'noupdate' | 'ok'; offer?: UpdateOffer; pollInterval?: number };
    try {
      if (srv.startsWith(STATIC_SERVER_PREFIX)) result = await this.staticCheck(srv.slice(STATIC_SERVER_PREFIX.length));
      else {
        // A trial boot marked good since this daemon started: report the update now.
        if (this.ps.pending?.slot === this.env.booted) await this.settlePending();
        const events = this.withOutbox([{ type: 3, result: 2, previousVersion: this.ps.reportPrevious ?? '' }]);
        result = parseResponse(await this.post(this.request(events, true, interactive)), APP_ID);
        await this.clearOutbox(events);
        if (this.ps.reportPrevious) {
          this.ps.reportPrevious = undefined;
          await this.save();
        }
        // The Omaha server is not trusted: its offer must be the channel's release in the signed TUF targets.
        if (result.status === 'ok' && result.offer) await this.trustOffer(result.offer, this.omahaRepoUrl(result.offer));
      }
    } catch (e) {
      const status = httpStatusOf(e);
      const transfer = isTransferFailure(e);
      const msg = isBasaltError(e) ? e.message : `${srv}: ${(e as Error).message}`;
      // An error of the run (a one-shot apply prints it as its one error line instead); the daemon checks again later.
      this.env.log.error(`update check failed: ${msg}`);
      const hint =
        status !== undefined && status >= 500
          ? `the server ${srv} is failing or overloaded: try again later`
          : status !== undefined && msg.includes('error-unknownApplication')
            ? `the server ${srv} does not serve this machine's app id: is SERVER the right URL for this OS?`
            : status !== undefined
            ? `the server ${srv} refused the check: is SERVER the right URL?`
            : `check the network and that ${srv} is up`;
      this.lastFailure = isBasaltError(e) && !transfer ? e : new BasaltError(UE_ERRORS.E_CHECK, `update check failed: ${msg}`, { hint, details: { errorCode: status ? ErrorCode.HttpBase + status : ErrorCode.OmahaRequestError } });
      this.lastCheck = 'failed';
      this.send({ type: 'CHECK_FAILED', now, httpStatus: status, message: msg });
      return;
    }
    this.lastCheck = result.status === 'noupdate' || !result.offer ? 'noupdate' : 'offered';
    if (result.status === 'noupdate' || !result.offer) {
      this.send({ type: 'NO_UPDATE', now, pollInterval: result.pollInterval });
      return;
    }
    if (this.ps.blocked.includes(result.offer.version)) {
      // Rolled back here before: not downloaded again (no event 13, no loop as in Flatcar#1924).
      const msg = `refusing ${result.offer.version}: it failed on this machine before (rolled back)`;
      this.env.log.info(`update check: ${msg}`);
      this.lastFailure = new BasaltError(UE_ERRORS.E_UPDATE_BLOCKED, msg, { hint: "a newer release will be taken; 'basalt update unblock' allows it again" });
      this.send({ type: 'NO_UPDATE', now, pollInterval: result.pollInterval });
      return;
    }
    this.offer = result.offer;
    this.send({ type: 'UPDATE_FOUND', now, offer: { version: result.offer.version, size: result.offer.size } });
  }

  /** The repository's root URL over Omaha: TUF_URL, else the repository of the first codebase that is one's payloads/<version>/. */
  private omahaRepoUrl(offer: UpdateOffer): string {
    if (this.env.tufUrl) return this.env.tufUrl;
    for (const c of offer.codebases) {
      const derived = repoUrlFromCodebase(c, offer.version);
      if (derived) return derived;
    }
    throw new BasaltError(UE_ERRORS.E_TUF_URL, `no codebase of the offer (${offer.codebases.join(' ') || 'none'}) is a repository's payloads/${offer.version}/, and no TUF_URL is set`);
  }

  /** Refreshes the TUF metadata from `repoUrl` and takes the channel's release in the verified targets. */
  private async refreshChannel(repoUrl: string): Promise<{ targets: TrustedTargets; release: ChannelRelease }> {
    const base = repoUrl.endsWith('/') ? repoUrl : repoUrl + '/';
    const targets = await refreshTrust({ stateDir: this.env.stateDir, initialRoot: this.env.tufRoot, metadataUrl: new URL('metadata/', base).toString(), limits: { fetchTimeout: this.env.http.documentMs }, log: this.env.log });
    return { targets, release: channelRelease(targets, this.env.me.channel) };
  }

  /** Takes an offer only when it is the channel's signed release (version and payload target). */
  private async trustOffer(offer: UpdateOffer, repoUrl: string): Promise<void> {
    const t = await this.refreshChannel(repoUrl);
    checkOffer(offer, t.release, t.targets, this.env.me.version);
    this.trusted = { ...t, version: offer.version };
  }

  /** The cap of a manifest fetch: the longest signed manifest target of the release (a manifest over it cannot be one). */
  private manifestMaxBytes(): number {
    const t = this.trusted;
    if (!t) return MAX_MANIFEST_BYTES;
    let max = 0;
    for (const tg of t.targets.targets.values()) if (tg.basalt['kind'] === 'manifest' && tg.basalt['version'] === t.version) max = Math.max(max, tg.length);
    return max || MAX_MANIFEST_BYTES;
  }

  /** A fetched manifest, taken when its bytes are a signed manifest target of the release and its payload the signed payload target. */
  private trustManifest(url: string, text: string): PayloadManifest {
    const t = this.trusted;
    if (!t) throw new BasaltError(UE_ERRORS.E_TUF_NOT_TARGET, `${url}: no verified TUF targets for this offer`);
    const bytes = Buffer.from(text, 'utf8');
    const target = manifestTargetFor(url, bytes, t.version, t.targets);
    checkBytes(bytes, target, url);
    const m = validateManifest(peekEnvelope(text, url), url);
    checkManifestPayload(m, target, t.targets);
    return m;
  }

  /**
   * Static mode: refresh the TUF metadata (metadata/ of the repository), take
   * channels/<GROUP>.json's signed target, fetch that file (capped at its
   * signed length) and check its bytes, version and manifest binding.
   * Freshness is TUF's (timestamp, snapshot and targets expiry); the channel
   * file's own expiry is not consulted.
   */
  private async staticCheck(base: string): Promise<{ status: 'noupdate' | 'ok'; offer?: UpdateOffer }> {
    const b = base.endsWith('/') ? base : base + '/';
    const t = await this.refreshChannel(this.env.tufUrl ?? b);
    const url = new URL(t.release.channelFile.path, b).toString();
    const text = await fetchText(this.http, url, { maxBytes: Math.min(MAX_CHANNEL_BYTES, t.release.channelFile.length) });
    checkBytes(Buffer.from(text, 'utf8'), t.release.channelFile, url);
    const ch = validateChannel(peekEnvelope(text, url), url, this.env.me.channel, new Date(0));
    checkChannelFile(ch, t.release);
    if (!decideOffer(ch, { machineId: this.env.machineId, version: this.env.me.version, board: this.env.me.board }).offer) return { status: 'noupdate' };
    // A signed floor between this machine and the head is taken first (multi-hop); its files are signed targets.
    const next = nextStop(t.release, this.env.me.version) ?? ch.version;
    const stop = next === ch.version ? ch : stopChannel(ch, t.targets, t.release, next);
    this.trusted = { ...t, version: next };
    const offer = (await this.staticDelta(stop, b)) ?? offerFromChannel(stop, b);
    checkOffer(offer, t.release, t.targets, this.env.me.version);
    return { status: 'ok', offer };
  }

  /** Static mode's delta: the release's delta from this machine's version, when the repository has one that verifies. */
  private async staticDelta(ch: ChannelMeta, base: string): Promise<UpdateOffer | undefined> {
    const from = this.env.me.version;
    const url = new URL(`${deltaDir(from)}/manifest.json`, offerFromChannel(ch, base).codebases[0]).toString();
    try {
      const m = this.trustManifest(url, await fetchText(this.http, url, { maxBytes: Math.min(MAX_MANIFEST_BYTES, this.manifestMaxBytes()) }));
      if (m.formatVersion !== 2 || m.delta?.from !== from || m.version !== ch.version) return undefined;
      return deltaOfferFromChannel(ch, base, from, m.payload);
    } catch (e) {
      // None published (404) or not a signed target: the full release.
      this.env.log.debug(`${url}: no delta (${(e as Error).message})`);
      return undefined;
    }
  }

  /** Resumable state present (for `status --json`). */
  async progressInfo() {
    return readProgress(this.env.stateDir);
  }

  unblock(): Promise<void> {
    this.ps.blocked = [];
    return this.save();
  }
}

/** The channel file's view of a signed floor: its manifest and payload targets in place of the head's. */
function stopChannel(ch: ChannelMeta, t: TrustedTargets, rel: ChannelRelease, version: string): ChannelMeta {
  const m = releaseManifest(t, rel, version);
  const p = releasePayload(t, version);
  return { ...ch, version, manifest: m.path, manifestSha256: m.sha256, payload: { path: p.path, size: p.length, sha256: p.sha256 } };
}

function sameEvent(a: OmahaEvent, b: OmahaEvent): boolean {
  return a.type === b.type && a.result === b.result && a.errorCode === b.errorCode && a.previousVersion === b.previousVersion;
}

export function newBootId(): string {
  return randomUUID();
}

/** The boot entries on the ESP (one definition, in esp.ts). */
export { entriesOf } from './esp.js';

