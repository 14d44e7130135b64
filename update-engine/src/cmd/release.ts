/** `basalt release`: publish a USR image as a signed payload into a static repository. */
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse, intOpt, parseSize } from '../../../common/src/cli/args.js';
import { UsageError } from '../../../common/src/errors.js';
import { readPrivateKeyFile } from '../publish/keys.js';
import { promote, refreshChannel, release, setChannelStops, type TufPublish } from '../publish/repo.js';
import { parseDuration } from '../format/duration.js';
import type { PayloadFormat, PayloadManifest } from '../format/metadata.js';
import { publishingKeys } from './keys.js';
import { DEFAULT_EXPIRY, initRepository, refreshTimestamp } from '../trust/publish.js';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fsError } from '../../../common/src/errors.js';

export const help = `Usage: basalt release --usr USR.img --version V --channel C --key KEY --repo DIR [options]
       basalt release promote V --from C1 --to C2 --key KEY --repo DIR [--expires 30d] [--rollout PCT]
       basalt release refresh --channel C --key KEY --repo DIR [--expires 30d] [--rollout PCT]
       basalt release floor|hold|drop V --channel C --key KEY --repo DIR [--expires 30d]
       basalt release init --repo DIR --tuf-root ROOT.json
       basalt release timestamp --repo DIR [--tuf-key KEY] [--timestamp-expires 1d] [--snapshot-expires 30d]

Makes a payload of the USR image (format 2: 4 MiB chunks, each stored as it is or as zstd,
whichever its content calls for; a squashfs compressed already is stored as it is), a signed
manifest (version, channels, board, sizes, SHA-256 of the payload, of the image and of every
chunk, each chunk's compression, kernel/initrd paths and dm-verity data from the builder's
usr.img.json), a detached
OpenPGP signature of the payload (gpg --verify accepts it), and publishes them atomically into
DIR/payloads/V/, then re-signs DIR/channels/C.json (with an expiry) to point at V.

 Every command that changes the repository then publishes its TUF metadata (metadata/: targets
listing every payload, manifest and channel file with length and sha256, snapshot, timestamp),
signed with the TUF keys (--tuf-key; default: the *.key.json beside --key except root.key.json).
'floor V' makes the older release V a stop of channel C that every machine below V installs
first (a multi-hop update: a machine at 1.0 goes to V, then to the channel's release). 'hold V'
lets a fleet server keep a group at the older release V (a pin; 'basalt fleet policy --pin V').
'drop V' removes either. Both are signed into the channel file and its TUF target: a machine
takes an older release than the channel's only when it is a floor or hold signed this way, so a
server cannot replay an old release. Releases and promotions keep the stops older than the new
version.
'init' installs root v1 (made by 'basalt keys generate' or 'basalt keys root') into a new
repository; the first release does it too, from --tuf-root or the root.json beside --key.
'timestamp' re-signs snapshot and timestamp with a fresh expiry using only the online keys:
run it more often than --timestamp-expires (e.g. from a timer), or machines refuse the
repository as frozen.

Options:
  --tuf-key PATH     (repeatable) TUF key file, or a folder of NAME.key.json
  --tuf-root FILE    root v1 for a repository that has none yet
  --targets-expires DUR    targets metadata lifetime (default 30d)
  --snapshot-expires DUR   snapshot metadata lifetime (default 30d)
  --timestamp-expires DUR  timestamp metadata lifetime (default 1d)
  --board B          board name (default: usr.img.json's board, else amd64-usr)
  --expires DUR      channel metadata lifetime (default 30d)
  --rollout PCT      phased rollout percentage for the channel (default: unchanged, else 100)
  --chunk-size SIZE  image bytes per chunk (default 4M, at most 64M)
  --zstd-level N     zstd level 1-19 each chunk is tried with (default 3)
  --payload-format N 2 (default) or 1: chunks as xz streams, for update-engines older than format 2
  --xz-level N       xz preset 0-9 (format 1; default 6)
  --jobs N           chunks compressed at once (default: one per CPU, at most 8);
                     the payload's bytes do not depend on it
  --image BIN        also publish the whole disk image basalt build wrote (the raw .bin, with
                     its manifest.json beside it) zstd-compressed into DIR/payloads/VERSION/image/,
                     as TUF targets: 'basalt install -C CHANNEL' installs the channel's release
  --delta-from V     (repeatable) also publish a delta from the released version V into DIR/payloads/VERSION/
                     delta-from-V/: the image's content-defined chunks that V's image has are taken
                     from the machine's running slot, only the rest is sent; a machine running V
                     is offered it (and falls back to the full payload when its slot does not match)
`;

/** "format 2: 38 stored, 2 zstd" or "format 1: xz". */
function describeChunks(m: PayloadManifest): string {
  if (m.formatVersion === 1) return 'format 1: xz';
  const n = (c: string) => m.payload.chunks.filter((x) => x.compression === c).length;
  return `format 2: ${n('none')} stored, ${n('zstd')} zstd${n('seed') ? `, ${n('seed')} from the running slot` : ''}`;
}

function payloadFormatOpt(v: string | undefined): PayloadFormat | undefined {
  if (v === undefined) return undefined;
  if (v === '1' || v === '2') return Number(v) as PayloadFormat;
  throw new UsageError(`--payload-format: '${v}' is not 1 or 2`);
}

export async function run(ctx: CommandContext): Promise<number> {
  const sub = ['promote', 'refresh', 'init', 'timestamp', 'floor', 'hold', 'drop'].includes(ctx.args[0] ?? '') ? ctx.args[0] : undefined;
  const { values, positionals } = parse(
    sub ? ctx.args.slice(1) : ctx.args,
    {
      usr: { type: 'string' },
      version: { type: 'string' },
      channel: { type: 'string' },
      key: { type: 'string' },
      repo: { type: 'string' },
      board: { type: 'string' },
      expires: { type: 'string' },
      rollout: { type: 'string' },
      'chunk-size': { type: 'string' },
      'xz-level': { type: 'string' },
      'zstd-level': { type: 'string' },
      'payload-format': { type: 'string' },
      'delta-from': { type: 'string', multiple: true },
      image: { type: 'string' },
      jobs: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      'tuf-key': { type: 'string', multiple: true },
      'tuf-root': { type: 'string' },
      'targets-expires': { type: 'string' },
      'snapshot-expires': { type: 'string' },
      'timestamp-expires': { type: 'string' },
    },
    sub ? `release ${sub}` : 'release',
  );
  const need = (k: keyof typeof values) => {
    const v = values[k];
    if (typeof v !== 'string' || v === '') throw new UsageError(`release${sub ? ' ' + sub : ''}: --${k} is required`);
    return v;
  };
  const expiresMs = values.expires === undefined ? 30 * 86_400_000 : parseDuration(values.expires);
  if (expiresMs === undefined) throw new UsageError(`--expires: '${values.expires}' is not a duration (e.g. 30d, 12h)`);
  const rollout = intOpt(values.rollout, 'rollout', 0, 100);
  const dur = (k: 'targets-expires' | 'snapshot-expires' | 'timestamp-expires', dflt: number): number => {
    const v = values[k];
    if (v === undefined) return dflt;
    const ms = parseDuration(v);
    if (ms === undefined) throw new UsageError(`--${k}: '${v}' is not a duration (e.g. 1d, 12h)`);
    return ms;
  };
  const expiries = { targets: dur('targets-expires', DEFAULT_EXPIRY.targets), snapshot: dur('snapshot-expires', DEFAULT_EXPIRY.snapshot), timestamp: dur('timestamp-expires', DEFAULT_EXPIRY.timestamp) };
  const repo = need('repo');
  const now = new Date();
  if (sub === 'init') {
    const rootFile = need('tuf-root');
    const md = await initRepository(repo, await readFile(rootFile, 'utf8').catch((e: unknown) => {
      throw fsError(e, rootFile, 'read the TUF root');
    }), rootFile);
    ctx.out(ctx.json ? JSON.stringify({ root: md.signed.version }) + '\n' : `${join(repo, 'metadata')}: root v${md.signed.version} installed\n`);
    return 0;
  }
  if (sub === 'timestamp') {
    const signers = await publishingKeys(values['tuf-key'], values.key);
    const r = await refreshTimestamp(repo, signers, now.getTime(), expiries);
    ctx.out(ctx.json ? JSON.stringify(r) + '\n' : `snapshot v${r.snapshot} and timestamp v${r.timestamp} signed (targets v${r.targets}), timestamp expires in ${Math.round(expiries.timestamp / 3_600_000)} h\n`);
    return 0;
  }
  const key = await readPrivateKeyFile(need('key'));
  const besideRoot = join(dirname(need('key')), 'root.json');
  const tuf: TufPublish = {
    signers: await publishingKeys(values['tuf-key'], values.key),
    expiries,
    initRoot: values['tuf-root'] ?? ((await stat(besideRoot).then(() => true, () => false)) ? besideRoot : undefined),
  };
  if (sub === 'promote') {
    const v = positionals[0];
    if (!v) throw new UsageError('release promote: the version is required');
    const meta = await promote(repo, v, need('from'), need('to'), key, now, expiresMs, rollout, tuf);
    ctx.out(ctx.json ? JSON.stringify(meta) + '\n' : `promoted ${v} from ${values.from} to ${values.to} (expires ${meta.expires})\n`);
    return 0;
  }
  if (sub === 'floor' || sub === 'hold' || sub === 'drop') {
    const v = positionals[0];
    if (!v || positionals.length > 1) throw new UsageError(`release ${sub}: one version is required`);
    const meta = await setChannelStops(repo, need('channel'), { [sub]: [v] }, key, now, expiresMs, tuf);
    const list = (l: string[] | undefined) => (l?.length ? l.join(', ') : 'none');
    ctx.out(ctx.json ? JSON.stringify(meta) + '\n' : `channel ${meta.channel} at ${meta.version} re-signed: floors ${list(meta.floors)}; holds ${list(meta.holds)}\n`);
    return 0;
  }
  if (sub === 'refresh') {
    const meta = await refreshChannel(repo, need('channel'), key, now, expiresMs, rollout, tuf);
    ctx.out(ctx.json ? JSON.stringify(meta) + '\n' : `channel ${meta.channel} at ${meta.version} re-signed, expires ${meta.expires}, rollout ${meta.rollout.percent}%\n`);
    return 0;
  }
  if (positionals.length) throw new UsageError(`release: unexpected argument '${positionals[0]}'`);
  const r = await release({
    usr: need('usr'),
    version: need('version'),
    channel: need('channel'),
    board: values.board,
    key,
    tuf,
    repo,
    now,
    expiresMs,
    rollout,
    chunkSize: values['chunk-size'] ? parseSize(values['chunk-size'], 'chunk-size') : undefined,
    xzLevel: intOpt(values['xz-level'], 'xz-level', 0, 9),
    zstdLevel: intOpt(values['zstd-level'], 'zstd-level', 1, 19),
    payloadFormat: payloadFormatOpt(values['payload-format']),
    deltaFrom: values['delta-from'],
    image: values.image,
    jobs: intOpt(values.jobs, 'jobs', 1, 64),
  });
  const m = r.manifest;
  ctx.out(
    ctx.json
      ? JSON.stringify({ manifest: m, channel: r.channel, deltas: r.deltas }) + '\n'
      : `released ${m.version} to ${r.channel.channel}: ${m.image.size} bytes -> ${m.payload.size} bytes in ${m.payload.chunks.length} chunks (${describeChunks(m)}), sha256 ${m.payload.sha256}\n` +
          r.deltas.map((d) => `delta from ${d.delta?.from}: ${d.payload.size} bytes (${((100 * d.payload.size) / Math.max(1, m.payload.size)).toFixed(1)} % of the full payload) in ${d.payload.chunks.length} chunks (${describeChunks(d)})\n`).join(''),
  );
  return 0;
}
