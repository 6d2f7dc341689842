import type { FastifyBaseLogger } from 'fastify';

type Bindings = Parameters<FastifyBaseLogger['child']>[0];
type ChildOptions = NonNullable<Parameters<FastifyBaseLogger['child']>[1]>;
type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type Log = (...args: unknown[]) => void;

/**
 * Fastify gives every request a child logger that carries its reqId. pino's child() builds an
 * object, its formatters and the serialised bindings, on every request, while nearly no request
 * logs anything: access logs are off, and only failures and refusals write a line. This logger
 * stands in for the child and makes the real one the first time the request writes at an
 * enabled level, with the same bindings, so the lines are the same.
 */
export class DeferredRequestLogger {
  private made: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
  ) {}

  /** The real child logger (made once). */
  child(bindings: Bindings, options?: ChildOptions): FastifyBaseLogger {
    return this.real().child(bindings, options);
  }

  get level(): string {
    return this.made?.level ?? this.parent.level;
  }

  set level(level: string) {
    this.real().level = level;
  }

  fatal(...args: unknown[]): void {
    this.write('fatal', args);
  }

  error(...args: unknown[]): void {
    this.write('error', args);
  }

  warn(...args: unknown[]): void {
    this.write('warn', args);
  }

  info(...args: unknown[]): void {
    this.write('info', args);
  }

  debug(...args: unknown[]): void {
    this.write('debug', args);
  }

  trace(...args: unknown[]): void {
    this.write('trace', args);
  }

  silent(): void {}

  /** Whether the request's logger would write at `level`. */
  isLevelEnabled(level: string): boolean {
    const logger = (this.made ?? this.parent) as FastifyBaseLogger & { isLevelEnabled?: (level: string) => boolean };
    return logger.isLevelEnabled?.(level) ?? true;
  }

  private write(level: Level, args: unknown[]): void {
    // Below the logger's level nothing is written, so no child is needed.
    if (this.made === undefined && !this.isLevelEnabled(level)) return;
    (this.real()[level] as Log)(...args);
  }

  private real(): FastifyBaseLogger {
    this.made ??= this.parent.child(this.bindings);
    return this.made;
  }
}

/**
 * Fastify's `childLoggerFactory`: a deferred child for the usual request (no route-specific
 * level or serializers), pino's child at once otherwise.
 */
export function deferredChildLogger(logger: FastifyBaseLogger, bindings: Bindings, options: ChildOptions): FastifyBaseLogger {
  if (Object.keys(options).length > 0) return logger.child(bindings, options);
  return new DeferredRequestLogger(logger, bindings) as unknown as FastifyBaseLogger;
}
