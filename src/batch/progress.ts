/** Where a job stands, as the progress display reads it. */
export interface ProgressState {
  /** Rows done in all runs of the job (resumed ones included). */
  readonly rowsDone: number;
  /** Rows done by this run. */
  readonly rowsThisRun: number;
  readonly errors: number;
  /** Total rows when known: stated up front (Parquet), or counted once the input was read to its end. */
  readonly totalRows: number | undefined;
  /**
   * Otherwise an estimate of the total (see {@link RowCountEstimate}), or undefined while none
   * can be made: the display then shows no percentage and no ETA.
   */
  readonly estimatedRows?: number | undefined;
}

/**
 * The row count of an input that does not state it (CSV, JSONL), as a job learns it: counted
 * once the input has been read to its end; before that, estimated from the bytes per row of the
 * rows taken so far (the input's size over the bytes the source had read when it handed them
 * over). A source reads ahead of the rows it hands over, by a buffer of the file: a reading taken
 * once the whole file is read says nothing of the rows still in that buffer, so it is not used,
 * and a file read whole with its first chunk has no estimate until its end.
 */
export class RowCountEstimate {
  private bytesPerRow: number | undefined;
  private rowsRead = 0;
  private counted: number | undefined;

  constructor(private readonly byteLength: number) {}

  /** The source handed over rows: `rows` in all so far, with `bytesRead` bytes of the file read by then. */
  read(rows: number, bytesRead: number): void {
    this.rowsRead = rows;
    if (rows > 0 && bytesRead > 0 && bytesRead < this.byteLength) this.bytesPerRow = bytesRead / rows;
  }

  /** The input ended: `rows` is its row count. */
  ended(rows: number): void {
    this.rowsRead = rows;
    this.counted = rows;
  }

  /** The row count, once the input was read to its end. */
  get total(): number | undefined {
    return this.counted;
  }

  /** The estimated row count (never fewer than the rows read), or undefined while there is none. */
  get estimate(): number | undefined {
    if (this.counted !== undefined) return this.counted;
    if (this.bytesPerRow === undefined) return undefined;
    return Math.max(this.rowsRead, Math.round(this.byteLength / this.bytesPerRow));
  }
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
    const fraction = doneFraction(state);
    const total = state.totalRows ?? state.estimatedRows;
    const remaining = fraction !== undefined && fraction < 1 && rate > 0 && total !== undefined ? Math.max(0, total - state.rowsDone) / rate : undefined;
    const rows = state.totalRows === undefined ? formatCount(state.rowsDone) : `${formatCount(state.rowsDone)}/${formatCount(state.totalRows)}`;
    const parts = [`${rows} rows`, `${formatCount(Math.round(rate))} rows/s`, `ETA ${remaining === undefined ? '--' : formatDuration(remaining)}`, `${formatCount(state.errors)} errors`];
    const percent = fraction === undefined ? '--' : formatPercent(fraction);
    if (this.mode === 'bar') {
      const width = 24;
      const filled = Math.floor((fraction ?? 0) * width);
      this.sink.write(`\r\x1b[K[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${percent.padStart(5)}%  ${parts.join('  ')}`);
      this.drawn = true;
    } else {
      this.sink.write(`tessera batch: ${percent}% ${parts.join(', ')}\n`);
    }
  }
}

/** The most an estimated share of rows done may show (99.9%). */
const ESTIMATE_CEILING = 0.999;

/**
 * The share of the rows done (0..1), from the total when known, else from the estimate (which
 * never says done: an estimated total may be short); undefined with neither.
 */
export function doneFraction(state: ProgressState): number | undefined {
  if (state.totalRows !== undefined) return state.totalRows > 0 ? Math.min(1, state.rowsDone / state.totalRows) : 1;
  if (state.estimatedRows === undefined || state.estimatedRows <= 0) return undefined;
  return Math.min(ESTIMATE_CEILING, state.rowsDone / state.estimatedRows);
}

/**
 * A share as a percentage with one decimal, rounded down (so 100.0 only when everything is
 * done; the epsilon keeps 0.07 from showing as 6.9 through binary rounding).
 */
export function formatPercent(fraction: number): string {
  return (Math.floor(fraction * 1000 + 1e-9) / 10).toFixed(1);
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
