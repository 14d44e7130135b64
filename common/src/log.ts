/**
 * Minimal leveled logger writing to stderr. Library code receives a Logger;
 * it never writes to stdout (stdout is for command output and --json).
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const isLevel = (s: string | undefined): s is Level => s !== undefined && Object.hasOwn(order, s);

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  child(prefix: string): Logger;
}

export function createLogger(opts: { level?: Level; prefix?: string; write?: (line: string) => void } = {}): Logger {
  // BASALT_LOG holds whatever was set: anything but a level name logs at 'info'.
  const envLevel = process.env['BASALT_LOG'];
  const level = opts.level ?? (isLevel(envLevel) ? envLevel : 'info');
  const min = order[level];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const prefix = opts.prefix ? `${opts.prefix}: ` : '';
  const at = (l: Level) => (msg: string) => {
    if (order[l] >= min) write(`${l === 'info' ? '' : l + ': '}${prefix}${msg}`);
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (p: string) => createLogger({ level, prefix: prefix + p, write }),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
