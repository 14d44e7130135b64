/**
 * Checks for the facts a stage reads back from its cache (result.json): the
 * one place where a stage's result comes from outside the program. Each
 * stage's readFacts builds its typed facts from these.
 */
import { BasaltError } from '../../common/src/errors.js';
import { BUILD_ERRORS } from './errors.js';

/** The fields of a JSON object, with checked getters; `where` names the file in messages. */
export class FactsReader {
  private readonly o: Record<string, unknown>;

  constructor(
    json: unknown,
    private readonly where: string,
  ) {
    if (!isRecord(json)) throw this.bad('the facts', 'are not a JSON object');
    this.o = json;
  }

  bad(field: string, what: string): BasaltError {
    return new BasaltError(BUILD_ERRORS.E_STAGE_CACHE_INVALID, `${this.where}: ${field} ${what}`);
  }

  /** The raw value of a field (for fields checked by the caller). */
  get(k: string): unknown {
    return this.o[k];
  }

  num(k: string): number {
    const v = this.o[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.bad(k, 'must be a number');
    return v;
  }

  str(k: string): string {
    const v = this.o[k];
    if (typeof v !== 'string') throw this.bad(k, 'must be a string');
    return v;
  }

  strOrNull(k: string): string | null {
    const v = this.o[k];
    if (v !== null && typeof v !== 'string') throw this.bad(k, 'must be a string or null');
    return v;
  }

  strList(k: string): string[] {
    const v = this.o[k];
    if (!Array.isArray(v) || !v.every((x): x is string => typeof x === 'string')) throw this.bad(k, 'must be a list of strings');
    return v;
  }

  /** A field holding an object of objects, each read with `each`. */
  record<T>(k: string, each: (r: FactsReader) => T): Record<string, T> {
    const v = this.o[k];
    if (!isRecord(v)) throw this.bad(k, 'must be an object');
    return Object.fromEntries(Object.entries(v).map(([name, x]) => [name, each(new FactsReader(x, `${this.where}: ${k}.${name}`))]));
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
