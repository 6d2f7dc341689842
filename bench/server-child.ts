/**
 * The server under test, in its own process: startServer() on 127.0.0.1 and an ephemeral
 * port with the repository and configuration the parent gives (argv[2], JSON), the HTTP and
 * gRPC ports reported over IPC. Stops (gracefully) on {kind:'stop'} or when the parent goes away.
 *
 * The log level defaults to the server's own default (info) with stdout sent to /dev/null by
 * the parent, so per-request logging costs are measured as a deployment would pay them.
 */
import { parseServerConfig } from '../src/config/server-config.js';
import { startServer, type TesseraServer } from '../src/server/server.js';
import { isParentMessage, readJob, toParent, type ServerChildJob } from './lib/ipc.js';

const job = readJob<ServerChildJob>(['repository', 'server']);
let server: TesseraServer | undefined;
let stopping = false;

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Bounded: exit even if draining hangs.
  setTimeout(() => process.exit(code), 20_000).unref();
  await server?.close();
  process.exit(code);
}

process.on('message', (message: unknown) => {
  if (!isParentMessage(message)) return;
  if (message.kind === 'stop') void stop(0);
  else void collect();
});

/** Two full collections (the child runs with --expose-gc), then the memory that is really held. */
async function collect(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await new Promise((resolve) => setImmediate(resolve));
  gc?.();
  const { rss, heapUsed, external } = process.memoryUsage();
  await toParent({ kind: 'collected', rss, heapUsed, external });
}
process.on('disconnect', () => void stop(0));

const started = performance.now();
try {
  // Every listener on an ephemeral port: several servers run side by side (their other
  // listeners stay enabled, as by default, but idle).
  server = await startServer(
    parseServerConfig({ ...job.server, modelRepository: job.repository, host: '127.0.0.1', httpPort: 0, grpcPort: 0, managementPort: 0, metricsPort: 0 }),
  );
  if (!server.engine.isReady()) {
    const reasons = server.engine
      .repositoryIndex()
      .map((entry) => `${entry.name}${entry.version === undefined ? '' : `/${entry.version}`}: ${entry.state} ${entry.reason}`)
      .join('; ');
    await toParent({ kind: 'failed', message: `the server started but is not ready: ${reasons}` });
    await stop(1);
  } else {
    await toParent({
      kind: 'ready',
      port: server.httpPort,
      ...(server.grpcPort === undefined ? {} : { grpcPort: server.grpcPort }),
      startMs: performance.now() - started,
    });
  }
} catch (error) {
  await toParent({ kind: 'failed', message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
}
