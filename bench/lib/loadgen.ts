/**
 * The load generator: undici against 127.0.0.1, run in the benchmark's own process.
 *
 * Closed loop ({@link closedLoop}): N workers on a Pool of N connections (pipelining 1), each
 * sending requests back to back. The run has a warm-up, then a measurement window; requests
 * that complete inside the window are counted (throughput) and their latencies kept
 * (high-resolution, from just before the request is handed to undici to the end of the
 * response body). No request starts after the window ends; the run then waits (bounded) for
 * the last responses.
 *
 * Open loop ({@link openLoop}): requests at a fixed arrival rate whatever the answers, for the
 * overload cell, with a bound on requests in flight.
 *
 * The closed loop's workers and window ({@link runClosedLoop}) do not depend on HTTP: the gRPC
 * generator (grpc-loadgen.ts) runs the same loop over a grpc-js channel.
 */
import { Pool } from 'undici';
import { summarize, type LatencySummary } from './stats.js';

const HEADERS = { 'content-type': 'application/json' } as const;

/** An HTTP closed loop: where to send which bodies, and its timing (see ClosedLoopTiming). */
export interface ClosedLoopOptions extends ClosedLoopTiming {
  readonly origin: string;
  readonly path: string;
  readonly bodies: readonly Buffer[];
  /** Extra request headers (content-type is application/json unless given). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface ClosedLoopResult {
  readonly windowSeconds: number;
  /** Responses (any status) and failures completed inside the window, by status ("200", "503", "ERR ..."). */
  readonly statusCounts: Readonly<Record<string, number>>;
  /** 2xx responses completed inside the window. */
  readonly ok: number;
  readonly errors: number;
  readonly requestsPerSecond: number;
  /** Latency of the 2xx responses completed inside the window, ms. */
  readonly latency: LatencySummary;
  /** The generator's own CPU (this process, all threads) in the window, percent of one core. */
  readonly generatorCpuPct: number;
  readonly issued: number;
  /** The run stopped at maxRequests before the window ended. */
  readonly truncated: boolean;
  /** Bytes of one request body. */
  readonly bodyBytes: number;
  /** TCP connections the pool opened (= concurrency when the server keeps connections alive). */
  readonly connectionsOpened: number;
}

function errorStatus(error: unknown): string {
  const code = typeof error === 'object' && error !== null && 'code' in error ? String((error as { code: unknown }).code) : 'unknown';
  return `ERR ${code}`;
}

const sleep = (msDelay: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, msDelay));

/** What one request of a closed loop came back with. */
export interface SendOutcome {
  /** "200", "503", "OK" (gRPC), ...: counted by status. */
  readonly status: string;
  /** Counted as answered (throughput, latency). */
  readonly ok: boolean;
}

/** A closed loop's timing and bounds, whatever carries the requests. */
export interface ClosedLoopTiming {
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Hard bound on requests issued (warm-up included). */
  readonly maxRequests: number;
  readonly requestTimeoutMs: number;
  /** Called when the measurement window opens and closes (e.g. to snapshot server stats). */
  readonly onWindowStart?: () => Promise<void>;
  readonly onWindowEnd?: () => Promise<void>;
}

/** The transport of a closed loop: HTTP through undici here, gRPC in grpc-loadgen.ts. */
export interface ClosedLoopTransport<B> {
  readonly bodies: readonly B[];
  /** Bytes of one request (for the report). */
  readonly bodyBytes: number;
  /** Send one request and wait for its whole answer; a rejection counts as `ERR <code>`. */
  send(body: B): Promise<SendOutcome>;
  connectionsOpened(): number;
  close(): Promise<void>;
}

export async function closedLoop(options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const pool = new Pool(options.origin, {
    connections: options.concurrency,
    pipelining: 1,
    headersTimeout: options.requestTimeoutMs,
    bodyTimeout: options.requestTimeoutMs,
    keepAliveTimeout: 60_000,
  });
  let connectionsOpened = 0;
  pool.on('connect', () => connectionsOpened++);
  const headers = { ...HEADERS, ...options.headers };
  const path = options.path;
  return runClosedLoop(options, {
    bodies: options.bodies,
    bodyBytes: options.bodies[0]?.length ?? 0,
    async send(body) {
      const response = await pool.request({ path, method: 'POST', headers, body });
      await response.body.arrayBuffer();
      const status = String(response.statusCode);
      return { status, ok: status.startsWith('2') };
    },
    connectionsOpened: () => connectionsOpened,
    close: () => pool.destroy(),
  });
}

/**
 * The closed loop itself: `concurrency` workers send back to back over `transport`; answers
 * completed inside the measurement window are counted. Closes the transport at the end.
 */
export async function runClosedLoop<B>(options: ClosedLoopTiming, transport: ClosedLoopTransport<B>): Promise<ClosedLoopResult> {
  const start = performance.now();
  const windowStart = start + options.warmupMs;
  const windowEnd = windowStart + options.durationMs;
  const counts: Record<string, number> = {};
  const latencies: number[] = [];
  let issued = 0;
  let truncated = false;
  let cpuAtStart = process.cpuUsage();
  let cpuInWindow = { user: 0, system: 0 };
  let realStart = windowStart;
  let realEnd = windowEnd;
  const hooks: Promise<void>[] = [];
  let startFired = false;
  let endFired = false;
  const fireStart = (): void => {
    if (startFired) return;
    startFired = true;
    realStart = performance.now();
    cpuAtStart = process.cpuUsage();
    if (options.onWindowStart !== undefined) hooks.push(options.onWindowStart());
  };
  const fireEnd = (): void => {
    if (endFired) return;
    fireStart();
    endFired = true;
    realEnd = performance.now();
    cpuInWindow = process.cpuUsage(cpuAtStart);
    if (options.onWindowEnd !== undefined) hooks.push(options.onWindowEnd());
  };
  const startTimer = setTimeout(fireStart, options.warmupMs);
  // The workers stop issuing at windowEnd; whichever comes first, the timer or the last
  // worker returning, closes the window (so the end hook always runs).
  const endTimer = setTimeout(fireEnd, options.warmupMs + options.durationMs);
  const bodies = transport.bodies;

  const worker = async (index: number): Promise<void> => {
    let next = index;
    for (;;) {
      const t0 = performance.now();
      if (t0 >= windowEnd) return;
      if (issued >= options.maxRequests) {
        truncated = true;
        return;
      }
      issued++;
      const body = bodies[next++ % bodies.length]!;
      let outcome: SendOutcome;
      try {
        outcome = await transport.send(body);
      } catch (error) {
        outcome = { status: errorStatus(error), ok: false };
        await sleep(5);
      }
      const t1 = performance.now();
      if (t1 >= windowStart && t1 <= windowEnd) {
        counts[outcome.status] = (counts[outcome.status] ?? 0) + 1;
        if (outcome.ok) latencies.push(t1 - t0);
      }
    }
  };

  const workers = Promise.all(Array.from({ length: options.concurrency }, (_, i) => worker(i)));
  // Bounded: the window plus the request timeout, then the transport is torn down.
  const limit = options.warmupMs + options.durationMs + options.requestTimeoutMs + 5_000;
  let guard: NodeJS.Timeout | undefined;
  await Promise.race([workers, new Promise<void>((resolve) => (guard = setTimeout(resolve, limit)))]);
  clearTimeout(guard);
  clearTimeout(startTimer);
  clearTimeout(endTimer);
  fireEnd();
  await Promise.all(hooks);
  await transport.close();
  const windowSeconds = (Math.min(realEnd, performance.now()) - realStart) / 1000;
  const ok = latencies.length;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return {
    windowSeconds,
    statusCounts: counts,
    ok,
    errors: total - ok,
    requestsPerSecond: ok / (options.durationMs / 1000),
    latency: summarize(latencies),
    generatorCpuPct: (100 * (cpuInWindow.user + cpuInWindow.system)) / 1000 / (realEnd - realStart),
    issued,
    truncated,
    bodyBytes: transport.bodyBytes,
    connectionsOpened: transport.connectionsOpened(),
  };
}

export interface OpenLoopOptions {
  readonly origin: string;
  readonly path: string;
  readonly bodies: readonly Buffer[];
  readonly ratePerSecond: number;
  readonly durationMs: number;
  readonly connections: number;
  /** Arrivals beyond this many requests in flight are skipped (counted, not sent). */
  readonly maxInFlight: number;
  readonly requestTimeoutMs: number;
  /** Called about once a second with the seconds elapsed. */
  readonly everySecond?: (second: number) => void;
}

export interface OpenLoopResult {
  readonly seconds: number;
  readonly sent: number;
  readonly skipped: number;
  /** Latencies (ms, from hand-off to undici to the end of the body) by status. */
  readonly byStatus: ReadonlyMap<string, readonly number[]>;
  /** 503/429 answers with and without a Retry-After header, and the values seen. */
  readonly retryAfter: { readonly present: number; readonly absent: number; readonly values: readonly string[] };
  /** How late the generator sent requests against their scheduled time, ms (p99, max). */
  readonly sendLagP99: number;
  readonly sendLagMax: number;
  /** Most requests ever waiting in undici's queue for a free connection. */
  readonly clientQueuedMax: number;
  readonly generatorCpuPct: number;
  /** TCP connections opened during the run. */
  readonly connectionsOpened: number;
}

export async function openLoop(options: OpenLoopOptions): Promise<OpenLoopResult> {
  const pool = new Pool(options.origin, {
    connections: options.connections,
    pipelining: 1,
    headersTimeout: options.requestTimeoutMs,
    bodyTimeout: options.requestTimeoutMs,
    keepAliveTimeout: 60_000,
  });
  let connectionsOpened = 0;
  pool.on('connect', () => connectionsOpened++);
  const byStatus = new Map<string, number[]>();
  const retryValues = new Set<string>();
  let retryPresent = 0;
  let retryAbsent = 0;
  const lags: number[] = [];
  let sent = 0;
  let skipped = 0;
  let inFlight = 0;
  let clientQueuedMax = 0;
  const pending = new Set<Promise<void>>();
  const cpu = process.cpuUsage();
  const start = performance.now();
  const end = start + options.durationMs;
  const interval = 1000 / options.ratePerSecond;

  const send = (scheduled: number): void => {
    if (inFlight >= options.maxInFlight) {
      skipped++;
      return;
    }
    inFlight++;
    sent++;
    const body = options.bodies[sent % options.bodies.length]!;
    const t0 = performance.now();
    lags.push(t0 - scheduled);
    const done = (async () => {
      let status: string;
      try {
        const response = await pool.request({ path: options.path, method: 'POST', headers: HEADERS, body });
        await response.body.arrayBuffer();
        status = String(response.statusCode);
        if (response.statusCode === 503 || response.statusCode === 429) {
          const value = response.headers['retry-after'];
          if (value === undefined) retryAbsent++;
          else {
            retryPresent++;
            retryValues.add(String(value));
          }
        }
      } catch (error) {
        status = errorStatus(error);
      }
      const latency = performance.now() - t0;
      let list = byStatus.get(status);
      if (list === undefined) byStatus.set(status, (list = []));
      list.push(latency);
      inFlight--;
    })();
    pending.add(done);
    void done.finally(() => pending.delete(done));
  };

  let scheduledCount = 0;
  let second = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      const stats = pool.stats;
      clientQueuedMax = Math.max(clientQueuedMax, stats.queued + stats.pending);
      const until = Math.min(now, end);
      while (start + scheduledCount * interval <= until) {
        send(start + scheduledCount * interval);
        scheduledCount++;
      }
      const elapsedSeconds = Math.floor((now - start) / 1000);
      while (second < elapsedSeconds) {
        second++;
        options.everySecond?.(second);
      }
      if (now >= end) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  // Bounded wait for the answers still in flight.
  let guard: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all([...pending]), new Promise<void>((resolve) => (guard = setTimeout(resolve, options.requestTimeoutMs + 2_000)))]);
  clearTimeout(guard);
  await pool.destroy();
  const lagSummary = summarize(lags);
  return {
    seconds,
    sent,
    skipped,
    byStatus,
    retryAfter: { present: retryPresent, absent: retryAbsent, values: [...retryValues] },
    sendLagP99: lagSummary.p99,
    sendLagMax: lagSummary.max,
    clientQueuedMax,
    generatorCpuPct: (100 * (used.user + used.system)) / 1000 / (seconds * 1000),
    connectionsOpened,
  };
}
