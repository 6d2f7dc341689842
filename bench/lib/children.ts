/**
 * Starting and stopping the benchmark's child processes. Children run TypeScript through tsx,
 * stdout goes to /dev/null (the server's logs cost what they cost, nothing reads them), stderr
 * is kept (last 16 KB) for error reports. Every wait is bounded; a child that does not stop in
 * time is killed by its pid.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { isChildMessage, type ChildMessage, type RawBatchResult, type RawChildJob } from './ipc.js';
import { REPO_ROOT } from './models.js';
import { sessionSettings } from '../../src/backends/onnx/settings.js';
import { defaultInstanceCount } from '../../src/config/model-config.js';

const BENCH_DIR = join(REPO_ROOT, 'bench');

export interface ServerProcess {
  readonly pid: number;
  /** HTTP port. */
  readonly port: number;
  /** gRPC port (Tessera server children; undefined for the tutorial baseline). */
  readonly grpcPort: number | undefined;
  readonly origin: string;
  /** Milliseconds from process start-up code to listening (model loads and warm-up included). */
  readonly startMs: number;
  stderrTail(): string;
  /** Memory after full garbage collections in the child (Tessera server children only). */
  collect(): Promise<{ readonly rss: number; readonly heapUsed: number; readonly external: number }>;
  stop(): Promise<void>;
}

/**
 * Extra Node.js flags for the server children (not the raw runner), e.g.
 * BENCH_SERVER_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the server under load.
 */
const SERVER_FLAGS = (process.env['BENCH_SERVER_NODE_FLAGS'] ?? '').split(' ').filter((flag) => flag !== '');

/** Where compiled server scripts are (see build.ts); undefined: run the TypeScript through tsx. */
let compiledDir: string | undefined;

export function useCompiledServers(dir: string | undefined): void {
  compiledDir = dir;
}

function spawnChild(script: string, job: unknown): { child: ChildProcess; stderrTail: () => string } {
  const server = script !== 'raw-child.ts';
  const compiled = server && compiledDir !== undefined;
  const file = compiled ? join(compiledDir!, script.replace(/\.ts$/, '.js')) : join(BENCH_DIR, script);
  const child = fork(file, [JSON.stringify(job)], {
    cwd: REPO_ROOT,
    execArgv: [...(compiled ? [] : ['--import', 'tsx']), ...(script === 'server-child.ts' ? ['--expose-gc'] : []), ...(server ? SERVER_FLAGS : [])],
    // BENCH_SERVER_STDOUT=inherit shows what a server writes to stdout (e.g. with BENCH_SERVER_NODE_FLAGS=--trace-gc).
    stdio: ['ignore', process.env['BENCH_SERVER_STDOUT'] === 'inherit' ? 'inherit' : 'ignore', 'pipe', 'ipc'],
  });
  let tail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-16_384);
  });
  return { child, stderrTail: () => tail };
}

function nextMessage(child: ChildProcess, stderrTail: () => string, timeoutMs: number, what: string): Promise<ChildMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what}: no answer within ${timeoutMs} ms\n${stderrTail()}`));
    }, timeoutMs);
    const onMessage = (message: unknown): void => {
      if (!isChildMessage(message)) return;
      cleanup();
      resolve(message);
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      cleanup();
      reject(new Error(`${what}: exited (code ${code}, signal ${signal}) before answering\n${stderrTail()}`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (child.connected) child.send({ kind: 'stop' });
    else child.kill('SIGTERM');
  });
}

/** Start a server child (`server-child.ts` or `baseline-server.ts`) and wait until it listens. */
export async function startServerProcess(script: 'server-child.ts' | 'baseline-server.ts', job: unknown, timeoutMs = 180_000): Promise<ServerProcess> {
  const { child, stderrTail } = spawnChild(script, job);
  let message: ChildMessage;
  try {
    message = await nextMessage(child, stderrTail, timeoutMs, script);
  } catch (error) {
    await stopChild(child, 5_000);
    throw error;
  }
  if (message.kind !== 'ready') {
    await stopChild(child, 5_000);
    throw new Error(`${script} failed to start: ${message.kind === 'failed' ? message.message : message.kind}\n${stderrTail()}`);
  }
  const port = message.port;
  return {
    pid: child.pid!,
    port,
    grpcPort: message.grpcPort,
    origin: `http://127.0.0.1:${port}`,
    startMs: message.startMs,
    stderrTail,
    collect: async () => {
      if (script !== 'server-child.ts') throw new Error(`${script} cannot collect garbage on request`);
      const answer = nextMessage(child, stderrTail, 30_000, `${script} collect`);
      child.send({ kind: 'collect' });
      const collected = await answer;
      if (collected.kind !== 'collected') throw new Error(`${script} answered '${collected.kind}' to collect`);
      return collected;
    },
    stop: () => stopChild(child, 25_000),
  };
}

/** Run the raw onnxruntime baseline in a child process. */
export async function runRawChild(job: RawChildJob, timeoutMs = 300_000): Promise<readonly RawBatchResult[]> {
  const { child, stderrTail } = spawnChild('raw-child.ts', job);
  try {
    const message = await nextMessage(child, stderrTail, timeoutMs, 'raw-child.ts');
    if (message.kind !== 'raw-result') throw new Error(`raw-child.ts: ${message.kind === 'failed' ? message.message : message.kind}`);
    return message.results;
  } finally {
    await stopChild(child, 5_000);
  }
}

/**
 * The layouts the raw baseline runs by default: one session on every core, and the server's
 * default instance count (two, each on half the cores) side by side. A raw figure is the best
 * of both, so the server is held to the better of what onnxruntime alone does either way.
 */
export const RAW_SESSION_LAYOUTS: readonly number[] = [...new Set([1, defaultInstanceCount()])];

/** Which raw run a figure comes from: sessions side by side, each at batch size. */
export interface RawLayout {
  readonly sessions: number;
  readonly batchSize: number;
}

/** `b16`, or `2x b8` for two sessions side by side. */
export function rawLayoutLabel(layout: RawLayout): string {
  return layout.sessions === 1 ? `b${layout.batchSize}` : `${layout.sessions}x b${layout.batchSize}`;
}

/**
 * The raw baseline of a benchmark model with the server's session options (`parameters`: model
 * parameters such as allow_spinning) for each layout of `sessions` side by side (threads split
 * as the server splits them among instances): every batch size of every layout, and the best.
 */
export async function runRawBaseline(
  model: { readonly key: string; readonly file: string; readonly input: string; readonly itemShape: readonly number[] },
  batchSizes: readonly number[],
  parameters: Readonly<Record<string, string | number | boolean>>,
  quick: boolean,
  layouts: readonly number[] = RAW_SESSION_LAYOUTS,
): Promise<{ readonly results: readonly RawBatchResult[]; readonly best: RawBatchResult }> {
  const results: RawBatchResult[] = [];
  for (const sessions of layouts) {
    const settings = sessionSettings(parameters, sessions);
    results.push(
      ...(await runRawChild({
        modelPath: model.file,
        input: model.input,
        itemShape: model.itemShape,
        batchSizes,
        intraOpNumThreads: settings.intraOpNumThreads,
        interOpNumThreads: settings.interOpNumThreads,
        allowSpinning: settings.allowSpinning,
        sessions,
        durationMs: quick ? 800 : 2_500,
        warmupRuns: model.key === 'resnet' ? 2 : 20,
        minRuns: 5,
        maxRuns: 200_000,
        quietThresholdPct: 15,
        quietMaxWaitMs: quick ? 3_000 : 15_000,
      })),
    );
  }
  const best = results.reduce((a, b) => (b.itemsPerSecond > a.itemsPerSecond ? b : a));
  return { results, best };
}

