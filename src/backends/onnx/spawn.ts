import { Worker } from 'node:worker_threads';

/**
 * Start a worker thread on a module that sits beside the caller. Compiled code runs the
 * `.js` module directly; when Tessera runs from its TypeScript sources (tests, `tsx`), the
 * worker first registers tsx's loader, which Node 20 does not pass on to workers by itself.
 * `workerData` reaches the module as worker_threads' `workerData`.
 */
export function spawnModuleWorker(moduleUrl: URL, workerData?: unknown): Worker {
  if (!moduleUrl.pathname.endsWith('.ts')) return new Worker(moduleUrl, { workerData });
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap =
    `import(${JSON.stringify(tsx)}).then((api) => { api.register(); ` +
    `return import(${JSON.stringify(moduleUrl.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}

/** URL of `name` (without extension) beside `callerUrl`, with the caller's own extension. */
export function siblingModule(callerUrl: string, name: string): URL {
  const extension = callerUrl.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./${name}${extension}`, callerUrl);
}
