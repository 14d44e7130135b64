/** `basalt fleet`: the fleet service's admin API from the command line. */
import { readFile } from 'node:fs/promises';
import type { CommandContext } from '../../../common/src/cli/types.js';
import { parse } from '../../../common/src/cli/args.js';
import { BasaltError, UsageError } from '../../../common/src/errors.js';
import { httpClient, requestText } from '../../../common/src/http.js';
import { UE_ERRORS } from '../errors.js';
import { parsePolicyDuration } from '../fleet/policy.js';

export const help = `Usage: basalt fleet COMMAND [options]

Talks to the admin API of 'basalt serve' (/admin/v1/, bearer token).

Commands:
  groups                        list groups with their channel, policy and pause
  group NAME --channel C        create a group (or move it to channel C)
  policy NAME JSON|@FILE        set a group's rollout policy, e.g.
                                '{"waves":"bottlerocket","maxUpdates":50,"period":"1h",
                                  "officeHours":{"days":[1,2,3,4,5],"start":"09:00","end":"17:00"},
                                  "floorVersion":"2.0.0","pinnedVersion":null,
                                  "autoPause":{"rollbackRate":0.05,"errorRate":0.1,"minMachines":20}}'
  pause NAME [--reason TEXT]    offer nothing to the group's machines
  resume NAME                   resume the group's rollout
  machines [--group G] [--not-seen-for DUR] [--limit N]
  machine ID                    one machine and its last events
  assign ID GROUP               move a machine to a group

Options:
  --server URL       the server (default http://127.0.0.1:8080/, or BASALT_FLEET_SERVER)
  --token-file FILE  the admin token (default: BASALT_FLEET_TOKEN)
  --json             print the API's JSON
`;

/** The largest admin API answer read (a listing of many machines), bounded against a wrong or hostile server. */
const MAX_API_REPLY_BYTES = 32 * 1024 * 1024;

interface Api {
  call(method: string, path: string, body?: unknown): Promise<Record<string, unknown>>;
}

function api(server: string, token: string): Api {
  return {
    async call(method, path, body) {
      const url = new URL(`admin/v1/${path}`, server.endsWith('/') ? server : server + '/');
      let r: { ok: boolean; status: number };
      let text: string;
      try {
        const reply = await requestText(httpClient({ connectMs: 30_000, stallMs: 30_000, totalMs: 30_000 }), url.toString(), {
          method: method as 'GET' | 'PUT' | 'POST' | 'DELETE',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          maxBytes: MAX_API_REPLY_BYTES,
        });
        r = { ok: reply.status >= 200 && reply.status <= 299, status: reply.status };
        text = reply.text;
      } catch (e) {
        throw new BasaltError(UE_ERRORS.E_FLEET_API, `${url.origin}: ${(e as Error).message}`, { cause: e });
      }
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        throw new BasaltError(UE_ERRORS.E_FLEET_API, `${url.toString()}: HTTP ${r.status}, not JSON`);
      }
      if (!r.ok) {
        const err = (json['error'] ?? {}) as { code?: string; message?: string; hint?: string };
        const def = Object.values(UE_ERRORS).find((d) => d.code === err.code) ?? UE_ERRORS.E_FLEET_API;
        throw new BasaltError(def, `${url.pathname}: ${err.message ?? `HTTP ${r.status}`}`, err.hint ? { hint: err.hint } : {});
      }
      return json;
    },
  };
}

async function token(file: string | undefined): Promise<string> {
  if (file) return (await readFile(file, 'utf8')).split('\n')[0]!.trim();
  const t = process.env['BASALT_FLEET_TOKEN']?.trim();
  if (!t) throw new BasaltError(UE_ERRORS.E_FLEET_AUTH, 'no admin token', { hint: 'pass --token-file FILE or set BASALT_FLEET_TOKEN' });
  return t;
}

const table = (rows: string[][]) => {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ')).join('\n') + '\n';
};

export async function run(ctx: CommandContext): Promise<number> {
  const { values, positionals } = parse(
    ctx.args,
    { server: { type: 'string' }, 'token-file': { type: 'string' }, channel: { type: 'string' }, reason: { type: 'string' }, group: { type: 'string' }, 'not-seen-for': { type: 'string' }, limit: { type: 'string' } },
    'fleet',
  );
  const [cmd, a, b] = positionals;
  if (!cmd) throw new UsageError('fleet: a command is required', "see 'basalt fleet --help'");
  const need = (v: string | undefined, what: string) => {
    if (!v) throw new UsageError(`fleet ${cmd}: ${what} is required`, "see 'basalt fleet --help'");
    return encodeURIComponent(v);
  };
  const c = api(values.server ?? process.env['BASALT_FLEET_SERVER'] ?? 'http://127.0.0.1:8080/', await token(values['token-file']));
  let r: Record<string, unknown>;
  switch (cmd) {
    case 'groups':
      r = await c.call('GET', 'groups');
      break;
    case 'group':
      r = await c.call('PUT', `groups/${need(a, 'NAME')}`, { channel: values.channel ?? a });
      break;
    case 'policy': {
      const text = need(b, 'the policy (JSON or @FILE)') && b!.startsWith('@') ? await readFile(b!.slice(1), 'utf8') : b!;
      let policy: unknown;
      try {
        policy = JSON.parse(text);
      } catch {
        throw new UsageError('fleet policy: the policy is not JSON');
      }
      r = await c.call('PUT', `groups/${need(a, 'NAME')}/policy`, policy);
      break;
    }
    case 'pause':
      r = await c.call('POST', `groups/${need(a, 'NAME')}/pause`, values.reason ? { reason: values.reason } : {});
      break;
    case 'resume':
      r = await c.call('POST', `groups/${need(a, 'NAME')}/resume`, {});
      break;
    case 'machines': {
      const q = new URLSearchParams();
      if (values.group) q.set('group', values.group);
      if (values['not-seen-for']) q.set('notSeenFor', String(parsePolicyDuration(values['not-seen-for'], '--not-seen-for')));
      if (values.limit) q.set('limit', values.limit);
      r = await c.call('GET', `machines${q.size ? `?${q.toString()}` : ''}`);
      break;
    }
    case 'machine':
      r = await c.call('GET', `machines/${need(a, 'ID')}`);
      break;
    case 'assign':
      r = await c.call('PUT', `machines/${need(a, 'ID')}/group`, { group: need(b, 'GROUP') && b });
      break;
    default:
      throw new UsageError(`fleet: unknown command '${cmd}'`, "see 'basalt fleet --help'");
  }
  if (typeof r['warning'] === 'string') ctx.log.warn(`fleet: ${r['warning']}`);
  if (ctx.json) {
    ctx.out(JSON.stringify(r, null, 2) + '\n');
    return 0;
  }
  const groups = (r['groups'] as Record<string, unknown>[] | undefined) ?? (r['id'] !== undefined ? [r] : undefined);
  if (groups) {
    ctx.out(table([['GROUP', 'CHANNEL', 'TARGET', 'STATE', 'POLICY'], ...groups.map((g) => [String(g['id']), String(g['channel']), typeof g['rolloutVersion'] === 'string' ? g['rolloutVersion'] : '-', g['paused'] ? `paused (${String(g['pauseReason'])})` : 'rolling', JSON.stringify(g['policy'])])]));
  } else if (Array.isArray(r['machines'])) {
    const ms = r['machines'] as Record<string, unknown>[];
    const when = (v: unknown) => (typeof v === 'number' ? new Date(v).toISOString() : '-');
    ctx.out(table([['MACHINE', 'GROUP', 'VERSION', 'LAST CHECK', 'ROLLBACKS'], ...ms.map((m) => [String(m['id']), String(m['group']), String(m['version']), when(m['lastCheck']), String(m['rollbacks'])])]));
  } else ctx.out(JSON.stringify(r, null, 2) + '\n');
  return 0;
}
