/**
 * The apply half of coreos-cloudinit's main: substitute variables, parse the
 * user-data, plan, then apply. Unlike v1.14.0, user-data whose validation
 * report holds an error is not applied at all (never in part). The plan's
 * warnings (settings apply does not honour as written) are logged before
 * anything is applied. Side effects: those of applyPlan.
 */
import { isBasaltError } from '../../../common/src/errors.js';
import type { Metadata } from '../datasource/index.js';
import { isCloudConfig, isIgnitionConfig, isScript, parseCloudConfigTyped, type Report } from '../validate/validate.js';
import { applyPlan, systemView } from './apply.js';
import { describeAction, plan, substitute, substitutions, type Plan } from './plan.js';

export interface RunApplyOptions {
  userdata: Uint8Array;
  metadata: Metadata;
  report: Report;
  root: string;
  workspace: string;
  sshKeyName: string;
  convertNetconf: string;
  ignoreFailure: boolean;
  failure: boolean;
  log: (line: string) => void;
  out: (text: string) => void;
  configRoot: string;
  dryRun?: boolean;
  env?: Record<string, string | undefined>;
}

export type PlanOutcome = { kind: 'ignition' } | { kind: 'refused'; errors: number } | { kind: 'parse-failed'; message: string } | ({ kind: 'planned' } & Plan);

/** Everything before side effects: substitution, parsing and the plan. Pure apart from reading the target tree. */
export function planUserData(o: Pick<RunApplyOptions, 'userdata' | 'metadata' | 'report' | 'root' | 'workspace' | 'sshKeyName' | 'env'>): PlanOutcome {
  const errors = o.report.entries.filter((e) => e.kind === 'error').length;
  if (errors > 0) return { kind: 'refused', errors };
  const env = o.env ?? process.env;
  const text = substitute(Buffer.from(o.userdata).toString('utf8'), substitutions(o.metadata, env));
  const sys = systemView(o.root, env);
  const popts = { sshKeyName: o.sshKeyName, workspace: o.workspace };
  if (text.length === 0) return { kind: 'planned', ...plan(null, null, o.metadata, sys, popts) };
  if (isScript(text)) return { kind: 'planned', ...plan(null, Buffer.from(text), o.metadata, sys, popts) };
  if (isCloudConfig(text)) {
    const parsed = parseCloudConfigTyped(Buffer.from(text));
    if ('error' in parsed) return { kind: 'parse-failed', message: parsed.error };
    return { kind: 'planned', ...plan(parsed.config, null, o.metadata, sys, popts) };
  }
  if (isIgnitionConfig(text)) return { kind: 'ignition' };
  return { kind: 'parse-failed', message: 'Unrecognized user-data format' };
}

export async function runApply(o: RunApplyOptions): Promise<number> {
  let failure = o.failure;
  let outcome: PlanOutcome;
  try {
    outcome = planUserData(o);
  } catch (e) {
    if (!isBasaltError(e)) throw e;
    o.log(`Failed to apply cloud-config: ${e.message}`);
    return 1;
  }
  switch (outcome.kind) {
    case 'ignition':
      o.out('Detected an Ignition config. Exiting...');
      return 0;
    case 'refused':
      o.log(`Refusing to apply user-data with ${outcome.errors} validation error(s); nothing was changed`);
      return 1;
    case 'parse-failed':
      o.out(`Failed to parse user-data: ${outcome.message}\nContinuing...\n`);
      failure = true;
      outcome = { kind: 'planned', actions: [], warnings: [] };
      break;
  }
  if (o.convertNetconf !== '') {
    o.log(`Failed to generate interfaces: -convert-netconf ${o.convertNetconf} is not implemented by Basalt`);
    return 1;
  }
  o.log('Merging cloud-config from meta-data and user-data');
  for (const w of outcome.warnings) o.log(w);
  try {
    const r = await applyPlan(outcome.actions, { root: o.root, log: o.log, dryRun: o.dryRun });
    if (!o.dryRun) o.log(`Applied: ${r.changed.length} change(s), ${r.skipped.length} unchanged or skipped`);
  } catch (e) {
    if (!isBasaltError(e)) throw e;
    o.log(`Failed to apply cloud-config: ${e.message}`);
    return 1;
  }
  return failure && !o.ignoreFailure ? 1 : 0;
}

export { describeAction };
