import { startServer } from '../src/server/server.js';
import { parseServerConfig } from '../src/config/server-config.js';
const server = await startServer(parseServerConfig({ modelRepository: 'examples/models', httpPort: 0, host: '127.0.0.1', logLevel: 'info' }));
const base = server.httpUrl;
for (const path of ['/v2', '/v2/health/ready', '/v2/models/iris', '/v2/models/iris/config']) {
  const r = await fetch(base + path); console.log(path, r.status, await r.text());
}
let r = await fetch(base + '/v2/models/iris/infer', { method: 'POST', body: JSON.stringify({ id: 'a', inputs: [{ name: 'features', shape: [2, 4], datatype: 'FP32', data: [5.1,3.5,1.4,0.2, 6.7,3.0,5.2,2.3] }] }) });
console.log(r.status, await r.text());
r = await fetch(base + '/v2/models/iris/infer', { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'features', shape: [2, 5], datatype: 'FP32', data: [5.1,3.5,1.4,0.2, 6.7,3.0,5.2,2.3] }] }) });
console.log(r.status, await r.text());
r = await fetch(base + '/v2/repository/index', { method: 'POST' }); console.log(r.status, await r.text());
r = await fetch(base + '/v2/models/iris/stats'); console.log(r.status, await r.text());
await server.close();
