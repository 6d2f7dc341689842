/** Where a job stands, as the progress display reads it. */
export interface ProgressState {
  /** Rows done in all runs of the job (resumed ones included). */
  readonly rowsDone: number;
  /** Rows done by this run. */
  readonly rowsThisRun: number;
  readonly errors: number;
  /** Total rows when known up front (Parquet), else undefined. */
  readonly totalRows: number | undefined;
  /** Share of the input read, for inputs whose row count is unknown (0..1). */
  readonly inputFraction: number;
}

export type ProgressMode = 'bar' | 'log' | 'none';

/** The bar is redrawn at most 4 times a second. */
const BAR_INTERVAL_MS = 250;

interface Sink {
  write(text: string): unknown;
}

/**
 * A progress bar redrawn at most 4 times a second on a terminal, or a log line every few
 * seconds otherwise. It only reads the state when it draws, so updates cost nothing.
 */
export class Progress {
  private timer: NodeJS.Timeout | undefined;
  private started = 0;
  private drawn = false;

  constructor(
    private readonly sink: Sink,
    private readonly mode: ProgressMode,
    private readonly intervalMs: number,
    private readonly state: () => ProgressState,
  ) {}

  start(): void {
    this.started = performance.now();
    if (this.mode === 'none') return;
    const every = this.mode === 'bar' ? BAR_INTERVAL_MS : this.intervalMs;
    this.timer = setInterval(() => this.draw(), every);
    this.timer.unref();
  }

  /** Stop drawing; the bar's line is cleared so the summary starts on a clean line. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    if (this.mode === 'bar' && this.drawn) this.sink.write('\r\x1b[K');
    this.drawn = false;
  }

  /** A message on its own line (the bar is redrawn below it at the next tick). */
  note(message: string): void {
    if (this.mode === 'bar' && this.drawn) this.sink.write('\r\x1b[K');
    this.drawn = false;
    this.sink.write(`${message}\n`);
  }

  private draw(): void {
    const state = this.state();
    const elapsed = (performance.now() - this.started) / 1000;
    const rate = elapsed > 0 ? state.rowsThisRun / elapsed : 0;
    const fraction = state.totalRows !== undefined && state.totalRows > 0 ? Math.min(1, state.rowsDone / state.totalRows) : state.inputFraction;
    const remaining = fraction > 0 && fraction < 1 && rate > 0 ? etaSeconds(state, rate, fraction, elapsed) : undefined;
    const rows = state.totalRows === undefined ? formatCount(state.rowsDone) : `${formatCount(state.rowsDone)}/${formatCount(state.totalRows)}`;
    const parts = [`${rows} rows`, `${formatCount(Math.round(rate))} rows/s`, `ETA ${remaining === undefined ? '--' : formatDuration(remaining)}`, `${formatCount(state.errors)} errors`];
    if (this.mode === 'bar') {
      const width = 24;
      const filled = Math.round(fraction * width);
      this.sink.write(`\r\x1b[K[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(1).padStart(5)}%  ${parts.join('  ')}`);
      this.drawn = true;
    } else {
      this.sink.write(`tessera batch: ${(fraction * 100).toFixed(1)}% ${parts.join(', ')}\n`);
    }
  }
}

function etaSeconds(state: ProgressState, rate: number, fraction: number, elapsed: number): number {
  if (state.totalRows !== undefined) return (state.totalRows - state.rowsDone) / rate;
  return (elapsed * (1 - fraction)) / fraction;
}

export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}
