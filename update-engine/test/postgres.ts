/**
 * A throwaway PostgreSQL cluster for tests: initdb into a temp dir, pg_ctl
 * start on a free 127.0.0.1 port, pg_ctl stop and delete afterwards. initdb
 * refuses to run as root, so as root the cluster runs as `nobody` (runuser).
 * No system service is used.
 */
import { chown, mkdtemp, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, spawnTool } from '../../common/src/exec.js';
import { freePort, waitFor } from './helpers.js';

export const PG_BIN = process.env['BASALT_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';

/** Why PostgreSQL tests cannot run here, or undefined when they can. */
export async function pgSkipReason(): Promise<string | undefined> {
  try {
    await access(join(PG_BIN, 'initdb'));
    await access(join(PG_BIN, 'pg_ctl'));
  } catch {
    return `PostgreSQL binaries not found in ${PG_BIN} (apt-get install postgresql; npm run setup installs it)`;
  }
  return undefined;
}

export interface TestPg {
  /** postgres://basalt@127.0.0.1:PORT/postgres */
  url: string;
  /** A URL of a fresh database of this cluster. */
  database(name: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startPostgres(): Promise<TestPg> {
  const dir = await mkdtemp(join(tmpdir(), 'basalt-pg-'));
  const root = process.getuid?.() === 0;
  const asUser = async (argv: string[]) => {
    const [cmd, ...args] = argv;
    const r = root ? await run('runuser', ['-u', 'nobody', '--', cmd!, ...args], { reject: false, timeoutMs: 120_000 }) : await run(cmd!, args, { reject: false, timeoutMs: 120_000 });
    if (r.exitCode !== 0) throw new Error(`${argv.join(' ')} failed (${r.exitCode}): ${r.stderr || r.stdout}`);
    return r;
  };
  if (root) {
    const { uid, gid } = await idOf('nobody');
    await chown(dir, uid, gid);
  }
  const data = join(dir, 'data');
  const port = await freePort();
  await asUser([join(PG_BIN, 'initdb'), '-D', data, '-U', 'basalt', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale', 'C']);
  // postgres in the foreground (pg_ctl's daemon would keep the tool's output pipes open).
  const pgArgs = [join(PG_BIN, 'postgres'), '-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'];
  const proc = root ? spawnTool('runuser', ['-u', 'nobody', '--', ...pgArgs]) : spawnTool(pgArgs[0]!, pgArgs.slice(1));
  let log = '';
  proc.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  proc.stdout?.on('data', () => undefined);
  let exited = false;
  void proc.exited.then(() => (exited = true), () => (exited = true));
  const url = `postgres://basalt@127.0.0.1:${port}/postgres`;
  const pg = (await import('pg')).default;
  await waitFor(async () => {
    if (exited) throw new Error(`postgres exited: ${log}`);
    const c = new pg.Client({ connectionString: url });
    try {
      await c.connect();
      await c.end();
      return true;
    } catch {
      await c.end().catch(() => undefined);
      return false;
    }
  }, 60_000, 'PostgreSQL to accept connections');
  return {
    url,
    async database(name) {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await c.query(`CREATE DATABASE ${name.replace(/[^a-z0-9_]/g, '_')}`);
      } finally {
        await c.end();
      }
      return `postgres://basalt@127.0.0.1:${port}/${name}`;
    },
    async stop() {
      await asUser([join(PG_BIN, 'pg_ctl'), '-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => proc.kill('SIGKILL'));
      await proc.exited.catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function idOf(user: string): Promise<{ uid: number; gid: number }> {
  const u = await run('id', ['-u', user]);
  const g = await run('id', ['-g', user]);
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}
