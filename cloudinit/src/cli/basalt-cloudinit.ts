/**
 * `basalt cloudinit validate|plan|apply`: the same validation as
 * coreos-cloudinit -validate on several files (human or JSON output, optional
 * --strict extras), and apply into a directory tree or / with a dry run.
 */
import { readFile } from 'node:fs/promises';
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse } from '../../../common/src/cli/args.js';
import { BasaltError, UsageError, fsError } from '../../../common/src/errors.js';
import { CLOUDINIT_ERRORS } from '../errors.js';
import { configDrive, ec2Metadata, localFile, openstackMetadata, procCmdline, urlSource, type Datasource } from '../datasource/index.js';
import { decompressIfGzip, formatEntry, validateUserData, type Entry } from '../validate/validate.js';
import { strictChecks } from '../validate/strict.js';
import { runApply } from '../apply/run.js';
import { goLogger } from './coreos-cloudinit.js';

export const help = `Usage: basalt cloudinit validate FILE... [--json] [--strict]
       basalt cloudinit apply [--root DIR] [--dry-run] SOURCE [--ssh-key-name NAME] [--workspace DIR]

validate   Check cloud-configs exactly as coreos-cloudinit v1.14.0 -validate does.
           Prints "FILE:line N: kind: message" (exit 1 if any entry). With --json,
           one JSON object per file and line: {file, entries: [{line, column, kind,
           code, path, message, hint}]}. --strict adds checks v1.14.0 lacks
           (etcd2 discovery URL, unit file syntax, duplicate keys).
apply      Plan and apply user-data. --root DIR writes into a directory tree
           (unit commands and daemon-reload are then only reported);
           --dry-run prints the plan. A config with a validation error is
           never applied.
SOURCE     --from-file FILE | --from-configdrive DIR|IMAGE | --from-url URL |
           --from-ec2-metadata URL | --from-openstack-metadata URL | --from-proc-cmdline |
           --platform ID (the datasource of a platform: aws, gce, azure, openstack,
           vmware, digitalocean; root URL from BASALT_METADATA_URL_<PLATFORM>)
`;

async function validateCmd(ctx: CommandContext, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { strict: { type: 'boolean' }, json: { type: 'boolean' } }, 'cloudinit validate');
  if (positionals.length === 0) throw new UsageError('cloudinit validate: no file given', 'basalt cloudinit validate FILE...');
  let any = false;
  for (const file of positionals) {
    let raw: Uint8Array;
    try {
      raw = new Uint8Array(await readFile(file));
    } catch (e) {
      throw fsError(e, file, 'read');
    }
    const data = decompressIfGzip(raw).data;
    const r = validateUserData(data);
    const entries: Entry[] = [...r.entries];
    if (values.strict && r.type === 'cloud-config') entries.push(...strictChecks(data));
    if (entries.length > 0) any = true;
    if (ctx.json || values.json) {
      ctx.out(
        JSON.stringify({
          file,
          entries: entries.map((e) => ({ line: e.line, column: e.column, kind: e.kind, code: e.code, path: e.path, message: e.message, hint: e.hint ?? null })),
        }) + '\n',
      );
    } else {
      for (const e of entries) ctx.out(`${file}:${formatEntry(e)}${e.hint ? `\n    hint: ${e.hint}` : ''}\n`);
    }
  }
  return any ? 1 : 0;
}

async function applyCmd(ctx: CommandContext, args: string[]): Promise<number> {
  const { values } = parse(
    args,
    {
      root: { type: 'string' },
      'dry-run': { type: 'boolean' },
      'from-file': { type: 'string' },
      'from-configdrive': { type: 'string' },
      'from-url': { type: 'string' },
      'from-ec2-metadata': { type: 'string' },
      'from-openstack-metadata': { type: 'string' },
      'from-proc-cmdline': { type: 'boolean' },
      platform: { type: 'string' },
      'ssh-key-name': { type: 'string' },
      workspace: { type: 'string' },
    },
    'cloudinit apply',
  );
  const log = goLogger({ out: (t) => ctx.out(t), err: (t) => process.stderr.write(t) });
  const sources: Datasource[] = [];
  if (values['from-file']) sources.push(localFile(values['from-file']));
  if (values['from-configdrive']) sources.push(configDrive(values['from-configdrive'], log));
  if (values['from-url']) sources.push(urlSource(values['from-url']));
  if (values['from-ec2-metadata']) sources.push(ec2Metadata(values['from-ec2-metadata'], {}, log));
  if (values['from-openstack-metadata']) sources.push(openstackMetadata(values['from-openstack-metadata']));
  if (values['from-proc-cmdline']) sources.push(procCmdline(process.env['BASALT_PROC_CMDLINE'] ?? '/proc/cmdline', {}, log));
  if (values.platform !== undefined) {
    const { PLATFORM_IDS, platformDatasources } = await import('../datasource/platform.js');
    const id = PLATFORM_IDS.find((p) => p === values.platform);
    if (!id) throw new BasaltError(CLOUDINIT_ERRORS.E_PLATFORM_ID, `--platform ${values.platform}: not a platform Basalt knows`);
    const specs = platformDatasources(id, process.env);
    if (specs.length === 0) throw new UsageError(`cloudinit apply: platform ${id} has no datasource of its own`, 'use --from-configdrive, --from-url or --from-file');
    const { openDatasource } = await import('../datasource/open.js');
    for (const d of specs) sources.push(await openDatasource(d, {}, log));
  }
  if (sources.length !== 1) throw new UsageError('cloudinit apply: give exactly one source', 'e.g. --from-file user_data');
  const ds = sources[0]!;
  if (!(await ds.isAvailable())) throw fsError(Object.assign(new Error('not available'), { code: 'ENOENT' }), ds.type, 'read');
  const gz = decompressIfGzip(await ds.fetchUserdata());
  const report = validateUserData(gz.data);
  for (const e of report.entries) log(formatEntry(e));
  const metadata = await ds.fetchMetadata();
  return runApply({
    userdata: gz.data,
    metadata,
    report,
    root: values.root ?? '/',
    workspace: values.workspace ?? '/var/lib/coreos-cloudinit',
    sshKeyName: values['ssh-key-name'] ?? 'coreos-cloudinit',
    convertNetconf: '',
    ignoreFailure: false,
    failure: !!gz.error,
    log,
    out: (t) => ctx.out(t),
    configRoot: ds.configRoot,
    dryRun: values['dry-run'] ?? false,
  });
}

export async function run(ctx: CommandContext): Promise<number> {
  const [sub, ...rest] = ctx.args;
  switch (sub) {
    case 'validate':
      return validateCmd(ctx, rest);
    case 'apply':
      return applyCmd(ctx, rest);
    default:
      throw new UsageError(`cloudinit: unknown subcommand '${sub ?? ''}'`, "run 'basalt cloudinit --help'");
  }
}
