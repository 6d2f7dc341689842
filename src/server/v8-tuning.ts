import { setFlagsFromString } from 'node:v8';

/**
 * V8 heap settings for a serving process.
 *
 * V8 "pretenures" an allocation site (allocates its objects straight into the old generation)
 * when, at a scavenge, nearly every object it made is still alive. In a server that sampling
 * goes wrong: sites run at start-up (configuration, model loading, warm-up), where everything
 * survives, are the same functions that later build every request's objects, and a site judged
 * at a scavenge that lands while dozens of requests are in flight looks long-lived too. Once a
 * site is pretenured, every request's objects from it go to the old generation and die there:
 * on the MLP benchmark at concurrency 64 the old generation grew from 33 to about 120 MB every
 * two seconds, each time followed by a mark-compact, and scavenges ran every 40 ms. With
 * pretenuring off the old generation stays flat (no mark-compact in the window) and the server
 * answers 25-30% more requests per second (bench/RESULTS.md).
 *
 * The flag is process-wide (worker threads included) and takes effect for decisions V8 makes
 * after it is set, so it is applied when a server starts, before requests arrive. A process
 * started with an explicit `--allocation-site-pretenuring` or `--no-allocation-site-pretenuring`
 * (on the command line or in NODE_OPTIONS) keeps its own choice.
 */
export function tuneHeapForServing(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env['NODE_OPTIONS'] ?? ''): boolean {
  if (explicitlySet(execArgv, nodeOptions)) return false;
  setFlagsFromString('--no-allocation-site-pretenuring');
  return true;
}

/** Whether the process was started with either form of the pretenuring flag. */
export function explicitlySet(execArgv: readonly string[], nodeOptions: string): boolean {
  const named = (arg: string): boolean => /^--(no[-_])?allocation[-_]site[-_]pretenuring(=|$)/.test(arg);
  return execArgv.some(named) || nodeOptions.split(/\s+/).some(named);
}
