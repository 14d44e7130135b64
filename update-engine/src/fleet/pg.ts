/**
 * The shared fleet database: PostgreSQL through `pg`, a bounded pool per
 * server. The store's `?` placeholders are numbered ($1, $2, …) here.
 */
import pg from 'pg';
import { BasaltError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';
import type { Db, Row } from './store.js';

/** `?` → `$n` (the store's queries have no `?` inside string literals). */
export function numberPlaceholders(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://…';
  }
}

export async function openPg(url: string, opts: { max?: number; statementTimeoutMs?: number } = {}): Promise<Db> {
  const where = redactUrl(url);
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10, connectionTimeoutMillis: 10_000, statement_timeout: opts.statementTimeoutMs ?? 10_000, idleTimeoutMillis: 30_000 });
  pool.on('error', () => undefined); // an idle client's failure: the next query reports it
  const fail = (e: unknown, sql?: string) => new BasaltError(UE_ERRORS.E_DB, `${where}: ${(e as Error).message}`, { cause: e, details: sql ? { sql } : {} });
  try {
    (await pool.connect()).release();
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw fail(e);
  }
  const query = async (c: pg.Pool | pg.PoolClient, sql: string, params: unknown[] = []): Promise<Row[]> => {
    try {
      return (await c.query(numberPlaceholders(sql), params)).rows as Row[];
    } catch (e) {
      throw fail(e, sql);
    }
  };
  return {
    kind: 'postgres',
    query: (sql, params) => query(pool, sql, params),
    tx: async (fn) => {
      let c: pg.PoolClient;
      try {
        c = await pool.connect();
      } catch (e) {
        throw fail(e);
      }
      try {
        await query(c, 'BEGIN');
        const r = await fn((sql, params) => query(c, sql, params));
        await query(c, 'COMMIT');
        return r;
      } catch (e) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw e;
      } finally {
        c.release();
      }
    },
    close: () => pool.end(),
  };
}
