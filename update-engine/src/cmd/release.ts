/** `basalt release`: publish a USR image as a signed payload into a static repository. */
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse, intOpt, parseSize } from '../../../common/src/cli/args.js';
import { UsageError } from '../../../common/src/errors.js';
import { readPrivateKeyFile } from '../publish/keys.js';
import { promote, refreshChannel, release } from '../publish/repo.js';
import { parseDuration } from '../format/duration.js';
import type { PayloadFormat, PayloadManifest } from '../format/metadata.js';

export const help = `Usage: basalt release --usr USR.img --version V --channel C --key KEY --repo DIR [options]
       basalt release promote V --from C1 --to C2 --key KEY --repo DIR [--expires 30d] [--rollout PCT]
       basalt release refresh --channel C --key KEY --repo DIR [--expires 30d] [--rollout PCT]

Makes a payload of the USR image (format 2: 4 MiB chunks, each stored as it is or as zstd,
whichever its content calls for; a squashfs compressed already is stored as it is), a signed
manifest (version, channels, board, sizes, SHA-256 of the payload, of the image and of every
chunk, each chunk's compression, kernel/initrd paths and dm-verity data from the builder's
usr.img.json), a detached
OpenPGP signature of the payload (gpg --verify accepts it), and publishes them atomically into
DIR/payloads/V/, then re-signs DIR/channels/C.json (with an expiry) to point at V.

Options:
  --board B          board name (default: usr.img.json's board, else amd64-usr)
  --expires DUR      channel metadata lifetime (default 30d)
  --rollout PCT      phased rollout percentage for the channel (default: unchanged, else 100)
  --chunk-size SIZE  image bytes per chunk (default 4M, at most 64M)
  --zstd-level N     zstd level 1-19 each chunk is tried with (default 3)
  --payload-format N 2 (default) or 1: chunks as xz streams, for update-engines older than format 2
  --xz-level N       xz preset 0-9 (format 1; default 6)
  --jobs N           chunks compressed at once (default: one per CPU, at most 8);
                     the payload's bytes do not depend on it
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
  const sub = ctx.args[0] === 'promote' || ctx.args[0] === 'refresh' ? ctx.args[0] : undefined;
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
      jobs: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
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
  const key = await readPrivateKeyFile(need('key'));
  const repo = need('repo');
  const now = new Date();
  if (sub === 'promote') {
    const v = positionals[0];
    if (!v) throw new UsageError('release promote: the version is required');
    const meta = await promote(repo, v, need('from'), need('to'), key, now, expiresMs, rollout);
    ctx.out(ctx.json ? JSON.stringify(meta) + '\n' : `promoted ${v} from ${values.from} to ${values.to} (expires ${meta.expires})\n`);
    return 0;
  }
  if (sub === 'refresh') {
    const meta = await refreshChannel(repo, need('channel'), key, now, expiresMs, rollout);
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
    repo,
    now,
    expiresMs,
    rollout,
    chunkSize: values['chunk-size'] ? parseSize(values['chunk-size'], 'chunk-size') : undefined,
    xzLevel: intOpt(values['xz-level'], 'xz-level', 0, 9),
    zstdLevel: intOpt(values['zstd-level'], 'zstd-level', 1, 19),
    payloadFormat: payloadFormatOpt(values['payload-format']),
    deltaFrom: values['delta-from'],
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
