import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

/**
 * V8 heap settings for a serving process. Both are process-wide (worker threads included), are
 * applied when a server starts, before requests arrive, and leave alone a flag that the process
 * was started with (on the command line or in NODE_OPTIONS).
 *
 * 1. Pretenuring off. V8 "pretenures" an allocation site (allocates its objects straight into
 * the old generation) when, at a scavenge, nearly every object it made is still alive. In a
 * server that sampling goes wrong: sites run at start-up (configuration, model loading,
 * warm-up), where everything survives, are the same functions that later build every request's
 * objects, and a site judged at a scavenge that lands while dozens of requests are in flight
 * looks long-lived too. Once a site is pretenured, every request's objects from it go to the old
 * generation and die there: on the MLP benchmark at concurrency 64 the old generation grew from
 * 33 to about 120 MB every two seconds, each time followed by a mark-compact, and scavenges ran
 * every 40 ms. With pretenuring off the old generation stays flat and the server answers 25-30%
 * more requests per second (bench/RESULTS.md).
 *
 * 2. Headroom before the next mark-compact ({@link HeapHeadroom}), 96 MB unless
 * TESSERA_HEAP_HEADROOM_MB says otherwise (0 turns it off). It helps models with large inputs
 * (ResNet c16: 10-25% more items/s); on small requests it measured neutral (MLP c64 with
 * metrics, monitoring and audit on, alternating servers with and without it: 1.01 and 0.975).
 */
export function tuneHeapForServing(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions = process.env['NODE_OPTIONS'] ?? '',
  env: Readonly<Record<string, string | undefined>> = process.env,
): { pretenuringOff: boolean; headroom: boolean } {
  const pretenuringOff = !flagGiven(PRETENURING_FLAG, execArgv, nodeOptions);
  if (pretenuringOff) setFlagsFromString('--no-allocation-site-pretenuring');
  const headroomBytes = headroomFromEnvironment(env);
  const headroom = headroomBytes > 0 && !flagGiven(GROWING_FLAG, execArgv, nodeOptions);
  if (headroom) processHeadroom ??= new HeapHeadroom(headroomBytes).start();
  return { pretenuringOff, headroom };
}

export const PRETENURING_FLAG = /^--(no[-_])?allocation[-_]site[-_]pretenuring(=|$)/;
export const GROWING_FLAG = /^--heap[-_]growing[-_]percent(=|$)/;

/** Whether the process was started with `flag` (any form the pattern matches). */
export function flagGiven(flag: RegExp, execArgv: readonly string[], nodeOptions: string): boolean {
  return execArgv.some((arg) => flag.test(arg)) || nodeOptions.split(/\s+/).some((arg) => flag.test(arg));
}

/** The default headroom, measured on the ResNet benchmark. */
export const SERVING_HEADROOM_BYTES = 96 * 1024 * 1024;

/**
 * Bytes of headroom for the serving process: TESSERA_HEAP_HEADROOM_MB megabytes (0 turns it
 * off), {@link SERVING_HEADROOM_BYTES} when unset. Anything else is a configuration mistake and
 * stops the server with a message that says so.
 */
export function headroomFromEnvironment(env: Readonly<Record<string, string | undefined>>): number {
  const raw = env['TESSERA_HEAP_HEADROOM_MB'];
  if (raw === undefined || raw.trim() === '') return SERVING_HEADROOM_BYTES;
  const mb = Number(raw);
  if (!Number.isFinite(mb) || mb < 0) {
    throw new Error(`TESSERA_HEAP_HEADROOM_MB: expected a number of megabytes (0 turns the headroom off), got '${raw}'`);
  }
  return Math.round(mb * 1024 * 1024);
}
/** Upper bound of the growing percent (a factor of 11), for near-empty heaps. */
const MAX_GROWING_PERCENT = 1000;

let processHeadroom: HeapHeadroom | undefined;

/**
 * The `--heap-growing-percent` that puts the next mark-compact `headroomBytes` above an old
 * generation of `oldGenerationBytes`, or 0 (V8's own policy) when the old generation is already
 * larger than the headroom.
 */
export function growingPercentFor(oldGenerationBytes: number, headroomBytes: number): number {
  if (oldGenerationBytes >= headroomBytes) return 0;
  return Math.min(MAX_GROWING_PERCENT, Math.ceil((100 * headroomBytes) / Math.max(1, oldGenerationBytes)));
}

/** Bytes in the old generation now: every space but the young ones and the read-only one. */
export function oldGenerationBytes(): number {
  let bytes = 0;
  for (const space of getHeapSpaceStatistics()) {
    if (space.space_name === 'new_space' || space.space_name === 'new_large_object_space' || space.space_name === 'read_only_space') continue;
    bytes += space.space_used_size;
  }
  return bytes;
}

/**
 * Keeps at least `headroomBytes` between the live old generation and the size at which V8
 * starts its next mark-compact.
 *
 * V8 counts external memory (the bytes behind ArrayBuffers: request bodies, socket chunks,
 * tensors) allocated since the last mark-compact against the old generation's limit, but sets
 * that limit from the JS heap alone: live size x a growing factor it derives from how fast the
 * JS heap fills, at least +8 MB. A server's JS heap is small (about 30 MB) and fills slowly,
 * while every large request brings its body as external memory, so the limit sat about 9 MB of
 * external memory above the heap and V8 ran an incremental mark-compact every 100-250 ms on the
 * ResNet benchmark (600 KB binary requests), each costing 20-30 ms of main-thread CPU plus
 * helper threads, which the inference threads then lacked. With the headroom the mark-compacts
 * come from V8's separate external-memory trigger (every 64 MB of it), about once a second, and
 * the same benchmark serves 10-20% more items per second (bench/RESULTS.md).
 *
 * It sets `--heap-growing-percent` after each mark-compact from the old generation then live;
 * once the old generation outgrows the headroom the flag goes back to 0 and V8's own growing
 * policy applies. Memory cost: at most `headroomBytes` of garbage in the old generation before
 * it is collected.
 */
export class HeapHeadroom {
  private percent = -1;
  private observer: PerformanceObserver | undefined;

  constructor(
    readonly headroomBytes: number,
    private readonly measure: () => number = oldGenerationBytes,
    private readonly setFlags: (flags: string) => void = setFlagsFromString,
  ) {}

  /** Sets the flag for the heap as it is, then again after every mark-compact. */
  start(): this {
    this.adjust();
    this.observer = new PerformanceObserver((list) => {
      const major = list.getEntries().some((entry) => (entry as { detail?: { kind?: number } | null }).detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR);
      if (major) this.adjust();
    });
    this.observer.observe({ entryTypes: ['gc'] });
    return this;
  }

  /** The growing percent now in force (-1 before the first adjustment). */
  get growingPercent(): number {
    return this.percent;
  }

  /** Recomputes the growing percent from the old generation's size; sets the flag if it changed. */
  adjust(): number {
    const percent = growingPercentFor(this.measure(), this.headroomBytes);
    if (percent !== this.percent) {
      this.setFlags(`--heap-growing-percent=${percent}`);
      this.percent = percent;
    }
    return percent;
  }

  stop(): void {
    this.observer?.disconnect();
    this.observer = undefined;
  }
}
