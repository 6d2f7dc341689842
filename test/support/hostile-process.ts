/**
 * `tessera serve` as a child process, the way it runs in production: spawned with
 * `node --import tsx src/cli/main.ts serve ...` on ports picked beforehand, its JSON log lines
 * collected, its resident memory read from /proc. Used by the shutdown and hostile-input suites.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { WebSocket } from 'undici';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A port free right now (bound to 0, then released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface ServeChild {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly httpUrl: string;
  readonly httpPort: number;
  readonly grpcPort: number;
  readonly metricsPort: number;
  readonly managementPort: number;
  /** stdout lines (pino JSON) and stderr lines, as they arrive. */
  readonly logs: string[];
  /** Resolves with the exit code (or signal) once the process ends. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL if still running (test clean-up). */
  kill(): void;
}

export interface SpawnOptions {
  /** Extra `serve` flags. */
  readonly args?: readonly string[];
  /** How long to wait for /v2/health/ready (default 60 s). */
  readonly readyTimeoutMs?: number;
  /** Open the inspector on a free loopback port, so {@link collectGarbage} can force a full GC. */
  readonly inspect?: boolean;
  /** Extra environment variables. */
  readonly env?: Readonly<Record<string, string>>;
  /** Extra Node.js / V8 flags, before the script. */
  readonly nodeFlags?: readonly string[];
}

/**
 * Start `tessera serve --model-repository <repository>` on free ports (HTTP, gRPC, metrics,
 * management, all on 127.0.0.1) and wait until it is ready.
 */
export async function spawnServe(repository: string, options: SpawnOptions = {}): Promise<ServeChild> {
  const [httpPort, grpcPort, metricsPort, managementPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const args = [
    ...(options.inspect === true ? ['--inspect=127.0.0.1:0'] : []),
    ...(options.nodeFlags ?? []),
    '--import',
    'tsx',
    'src/cli/main.ts',
    'serve',
    '--model-repository',
    repository,
    '--host',
    '127.0.0.1',
    '--http-port',
    String(httpPort),
    '--grpc-port',
    String(grpcPort),
    '--metrics-port',
    String(metricsPort),
    '--management-port',
    String(managementPort),
    ...(options.args ?? []),
  ];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'production', ...options.env } });
  const logs: string[] = [];
  const collect = (stream: NodeJS.ReadableStream | null): void => {
    let pending = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      logs.push(...lines.filter((line) => line !== ''));
    });
  };
  collect(child.stdout);
  collect(child.stderr);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const handle: ServeChild = {
    child,
    pid: child.pid ?? -1,
    httpUrl,
    httpPort,
    grpcPort,
    metricsPort,
    managementPort,
    logs,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  let ended = false;
  void exited.then(() => (ended = true));
  while (Date.now() < deadline) {
    if (ended) throw new Error(`tessera serve exited before it was ready:\n${logs.join('\n')}`);
    const status = await fetch(`${httpUrl}/v2/health/ready`).then(
      (response) => response.status,
      () => 0,
    );
    if (status === 200) return handle;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  handle.kill();
  throw new Error(`tessera serve was not ready within ${options.readyTimeoutMs ?? 60_000} ms:\n${logs.join('\n')}`);
}

/** Resident set size of process `pid` in bytes (VmRSS of /proc/<pid>/status). */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/**
 * Force a full garbage collection in a child started with `inspect: true` (the inspector's
 * HeapProfiler.collectGarbage), so memory is measured without garbage that no GC has looked at yet.
 */
export async function collectGarbage(server: ServeChild): Promise<void> {
  const url = server.logs.map((line) => /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1]).find((found) => found !== undefined);
  if (url === undefined) throw new Error('the child has no inspector (start it with inspect: true)');
  const socket = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => socket.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' })));
    socket.addEventListener('message', (event) => {
      if ((JSON.parse(String(event.data)) as { id?: number }).id === 1) resolve();
    });
    socket.addEventListener('error', () => reject(new Error(`inspector ${url} failed`)));
  });
  socket.close();
}

/** Parsed pino log lines with a `msg` (non-JSON lines are skipped). */
export function logMessages(logs: readonly string[]): { msg: string; time: number; [key: string]: unknown }[] {
  const out: { msg: string; time: number; [key: string]: unknown }[] = [];
  for (const line of logs) {
    try {
      const parsed = JSON.parse(line) as { msg?: unknown; time?: unknown };
      if (typeof parsed.msg === 'string') out.push(parsed as { msg: string; time: number });
    } catch {
      // not a log line
    }
  }
  return out;
}
