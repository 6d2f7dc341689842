/**
 * The "tutorial baseline": how Node.js inference servers are usually taught. node:http, one
 * onnxruntime-node session created with default options, JSON.parse of the V2 request,
 * session.run per request on the main thread, JSON.stringify of the result. No batching, no
 * worker threads, no validation. Runs in its own process (argv[2]: {"modelPath": ...}) and
 * reports its port over IPC; stops on {kind:'stop'} or when the parent goes away.
 *
 * It serves POST /v2/models/<any>/infer with V2 JSON bodies, so the same load generator and
 * the same bodies drive it and the Tessera server.
 */
import http from 'node:http';
import * as ort from 'onnxruntime-node';
import { isParentMessage, readJob, toParent, type BaselineChildJob } from './lib/ipc.js';

interface V2Request {
  inputs: { name: string; shape: number[]; datatype: string; data: number[] }[];
}

const job = readJob<BaselineChildJob>(['modelPath']);
const started = performance.now();
const session = await ort.InferenceSession.create(job.modelPath);

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url === undefined || !req.url.endsWith('/infer')) {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'not found' }));
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', async () => {
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as V2Request;
      const feeds: Record<string, ort.Tensor> = {};
      for (const input of body.inputs) {
        feeds[input.name] = new ort.Tensor('float32', Float32Array.from(input.data), input.shape);
      }
      const results = await session.run(feeds);
      const outputs = Object.entries(results).map(([name, tensor]) => ({
        name,
        datatype: 'FP32',
        shape: tensor.dims,
        data: Array.from(tensor.data as Float32Array),
      }));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ model_name: req.url?.split('/')[3], outputs }));
    } catch (error) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: error instanceof Error ? error.message : String(error) }));
    }
  });
});

function stop(): void {
  setTimeout(() => process.exit(0), 5_000).unref();
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('message', (message: unknown) => {
  if (isParentMessage(message)) stop();
});
process.on('disconnect', stop);

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  void toParent({ kind: 'ready', port, startMs: performance.now() - started });
});
