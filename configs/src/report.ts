/**
 * Validation reports for Basalt's YAML inputs. A report never stops at the
 * first problem: every entry names the file, the line and column, and the key
 * path it is about. Pure; no I/O.
 */
export type Severity = 'error' | 'warning';

export interface ReportEntry {
  severity: Severity;
  /** Stable code, e.g. E_PROFILE_TYPE. */
  code: string;
  /** Dotted key path, e.g. `usr.compression` or `packages[3]`. */
  path: string;
  file: string;
  /** 1-based line, 0 when unknown. */
  line: number;
  /** 1-based column, 0 when unknown. */
  column: number;
  message: string;
}

export function hasErrors(report: readonly ReportEntry[]): boolean {
  return report.some((e) => e.severity === 'error');
}

/** `file:line:col: error: path: message`, one line per entry. */
export function formatReport(report: readonly ReportEntry[]): string {
  return report
    .map((e) => `${e.file}:${e.line}:${e.column}: ${e.severity}: ${e.path ? e.path + ': ' : ''}${e.message}`)
    .join('\n');
}
