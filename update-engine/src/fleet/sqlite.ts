/**
 * The embedded fleet database: SQLite through Node's own node:sqlite, one
 * file (or ':memory:'). Statements run one at a time through a queue, so a
 * transaction's statements never interleave with another request's. node:sqlite
 * is synchronous: SQLite's own busy wait would block the event loop (and the
 * other connection it waits for, when both are in this process), so a busy
 * database is retried here, asynchronously, for up to BUSY_WAIT_MS.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { BasaltError } from '../../../common/src/errors.js';
import { UE_ERRORS } from '../errors.js';
import type { Db, Row } from './store.js';

type SQLInputValue = null | number | bigint | string | NodeJS.ArrayBufferView;

/** How long a statement waits for another connection's write to end. */
export const BUSY_WAIT_MS = 10_000;

export async function openSqlite(path: string): Promise<Db> {
  const { DatabaseSync } = await import('node:sqlite');
  if (path !== ':memory:') await mkdir(dirname(path), { recursive: true });
  let db: InstanceType<typeof DatabaseSync>;
  try {
    db = new DatabaseSync(path);
    db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 0; PRAGMA foreign_keys = ON');
  } catch (e) {
    throw new BasaltError(UE_ERRORS.E_DB, `${path}: cannot open the fleet database: ${(e as Error).message}`, { cause: e });
  }
  const run = (sql: string, params: unknown[] = []): Row[] => {
    try {
      const st = db.prepare(sql);
      const args = params.map((p) => (typeof p === 'boolean' ? (p ? 1 : 0) : p === undefined ? null : p)) as SQLInputValue[];
      return /^\s*(SELECT|WITH)|RETURNING/i.test(sql) ? (st.all(...args)) : (st.run(...args), []);
    } catch (e) {
      throw new BasaltError(UE_ERRORS.E_DB, `${path}: ${(e as Error).message}`, { cause: e, details: { sql } });
    }
  };
  const busy = (e: unknown) => /database is locked|SQLITE_BUSY/i.test((e as BasaltError).message);
  const retrying = async <T>(fn: () => T): Promise<T> => {
    const end = Date.now() + BUSY_WAIT_MS;
    for (let delay = 1; ; delay = Math.min(50, delay * 2)) {
      try {
        return fn();
      } catch (e) {
        if (!busy(e) || Date.now() > end) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  };
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn, fn);
    queue = p.catch(() => undefined);
    return p;
  };
  return {
    kind: 'sqlite',
    query: (sql, params) => serial(() => retrying(() => run(sql, params))),
    tx: (fn) =>
      serial(async () => {
        await retrying(() => run('BEGIN IMMEDIATE'));
        try {
          const r = await fn(async (sql, params) => run(sql, params));
          run('COMMIT');
          return r;
        } catch (e) {
          run('ROLLBACK');
          throw e;
        }
      }),
    close: () => serial(async () => db.close()),
  };
}
