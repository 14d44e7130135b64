/** `basalt keys generate|export`: OpenPGP release keys. */
import { join } from 'node:path';
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse } from '../../../common/src/cli/args.js';
import { UsageError, BasaltError, COMMON_ERRORS } from '../../../common/src/errors.js';
import { exportPublic, generateKey } from '../publish/keys.js';
import { writeFileAtomic } from '../../../common/src/fsutil.js';
import { stat } from 'node:fs/promises';

export const help = `Usage: basalt keys generate --out DIR [--name NAME] [--email EMAIL] [--force]
       basalt keys export --key PRIVATE.asc [--out PUBLIC.asc]

generate  writes DIR/release.key (private, mode 0600; never put it in a repository or an image)
          and DIR/release.pub.asc (the public key; install it in the image's /usr/share/basalt/keys/)
export    prints (or writes) the armored public key of a private key
`;

export async function run(ctx: CommandContext): Promise<number> {
  const sub = ctx.args[0];
  const { values } = parse(ctx.args.slice(1), { out: { type: 'string' }, name: { type: 'string' }, email: { type: 'string' }, key: { type: 'string' }, force: { type: 'boolean' } }, `keys ${sub ?? ''}`.trim());
  if (sub === 'generate') {
    if (!values.out) throw new UsageError('keys generate: --out DIR is required');
    const priv = join(values.out, 'release.key');
    const pub = join(values.out, 'release.pub.asc');
    if (!values.force && (await stat(priv).then(() => true, () => false))) {
      throw new BasaltError(COMMON_ERRORS.E_EXISTS, `${priv} already exists`, { hint: 'use --force to replace it (the old key can then no longer sign)' });
    }
    const k = await generateKey(values.name ?? 'Basalt release signing key', values.email);
    await writeFileAtomic(priv, k.privateArmored, 0o600);
    await writeFileAtomic(pub, k.publicArmored);
    if (ctx.json) ctx.out(JSON.stringify({ fingerprint: k.fingerprint, privateKey: priv, publicKey: pub }) + '\n');
    else ctx.out(`key ${k.fingerprint}\nprivate: ${priv}\npublic:  ${pub}\n`);
    return 0;
  }
  if (sub === 'export') {
    if (!values.key) throw new UsageError('keys export: --key PRIVATE is required');
    const { armored, fingerprint } = await exportPublic(values.key);
    if (values.out) {
      await writeFileAtomic(values.out, armored);
      ctx.out(ctx.json ? JSON.stringify({ fingerprint, publicKey: values.out }) + '\n' : `${values.out}\n`);
    } else ctx.out(armored);
    return 0;
  }
  throw new UsageError(`keys: unknown subcommand '${sub ?? ''}'`, 'use generate or export');
}
