import { Command } from 'commander';
import { formatDuration, parseDuration } from './config.js';
import { quantileName, type CanaryDecision, type CanaryStatus } from './canary.js';
import type { RolloutStatus } from './router.js';

/**
 * `tessera traffic | canary | alias | shadow | rollout`: rollout commands that talk to a running
 * server's management API over HTTP (`--management-url`, env TESSERA_MANAGEMENT_URL, default
 * http://127.0.0.1:8081). Each prints what the server answered; `--json` prints it raw.
 */

export const DEFAULT_MANAGEMENT_URL = 'http://127.0.0.1:8081';

/** Where the commands write (tests capture it). */
export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
  /** Set on failure (process.exitCode by default). */
  readonly fail: (code: number) => void;
}

const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
  fail: (code) => {
    process.exitCode = code;
  },
};

interface CommonFlags {
  readonly managementUrl?: string;
  readonly json?: boolean;
}

class CliError extends Error {}

/** Add the rollout commands to `program`. */
export function registerRoutingCommands(program: Command, io: CliIo = processIo): void {
  // `canary start m --version 2`: the program's own -V/--version only counts before a subcommand.
  program.enablePositionalOptions();
  const base = (flags: CommonFlags): string => (flags.managementUrl ?? io.env['TESSERA_MANAGEMENT_URL'] ?? DEFAULT_MANAGEMENT_URL).replace(/\/+$/, '');
  const run =
    <A extends unknown[]>(fn: (...args: A) => Promise<void>) =>
    async (...args: A): Promise<void> => {
      try {
        await fn(...args);
      } catch (error) {
        io.err(`tessera: ${(error as Error).message}\n`);
        io.fail(1);
      }
    };
  const call = async (flags: CommonFlags, method: string, path: string, body?: unknown): Promise<unknown> => {
    const url = `${base(flags)}${path}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(`cannot reach the management API at ${base(flags)}: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
    }
    const text = await response.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = text;
    }
    if (!response.ok) {
      const message = typeof json === 'object' && json !== null && 'message' in json ? String((json as { message: unknown }).message) : text;
      throw new CliError(`${message} (HTTP ${response.status})`);
    }
    return json;
  };
  const print = (flags: CommonFlags, json: unknown, text: () => string): void => {
    io.out(flags.json === true ? `${JSON.stringify(json, null, 2)}\n` : text());
  };
  const model = (name: string): string => `/models/${encodeURIComponent(name)}`;
  const withCommon = (command: Command): Command =>
    command.option('--management-url <url>', `management API (env TESSERA_MANAGEMENT_URL; default ${DEFAULT_MANAGEMENT_URL})`).option('--json', 'print the server\'s JSON answer');

  const traffic = program.command('traffic').description("set how a model's traffic is split between its versions (management API)");
  withCommon(traffic.command('set <model> <split>').description('weighted split, e.g. 1=90,2=10'))
    .action(
      run(async (name: string, text: string, flags: CommonFlags) => {
        const status = (await call(flags, 'PUT', `${model(name)}/traffic`, { split: parseSplit(text) })) as RolloutStatus;
        print(flags, status, () => `${describeTraffic(status)}\n`);
      }),
    );
  withCommon(traffic.command('clear <model>').description('remove the split: requests go to the default version'))
    .action(
      run(async (name: string, flags: CommonFlags) => {
        const status = (await call(flags, 'DELETE', `${model(name)}/traffic`)) as RolloutStatus;
        print(flags, status, () => `${describeTraffic(status)}\n`);
      }),
    );
  withCommon(traffic.command('default <model> <version>').description("serve requests naming no version with this version or alias ('latest': the highest ready)"))
    .action(
      run(async (name: string, version: string, flags: CommonFlags) => {
        const status = (await call(flags, 'PUT', `${model(name)}/traffic`, { default_version: version === 'latest' ? null : version })) as RolloutStatus;
        print(flags, status, () => `${describeTraffic(status)}\n`);
      }),
    );

  const canary = program.command('canary').description('canary rollouts with automatic promotion and rollback (management API)');
  withCommon(canary.command('start <model>').description('start a canary: the version\'s share steps up while its gates hold'))
    .requiredOption('--version <n>', 'the new version')
    .option('--steps <list>', 'traffic percentages, ascending (default 5,25,50,100)')
    .option('--hold <duration>', 'how long each step must hold its gates, e.g. 60s, 5m (default 60s)')
    .option('--stable <n>', 'the version to measure against (default the current default version)')
    .option('--max-error-rate-delta <x>', 'largest excess error rate over stable (default 0.02)')
    .option('--max-p99-ratio <x>', 'largest canary/stable p99 latency ratio (default 1.5)')
    .option('--min-agreement <x>', "least top-1 agreement with stable on mirrored requests, or 'none' (default 0.9)")
    .option('--min-requests <n>', 'canary requests a step needs before it is judged (default 20)')
    .option('--mirror-share <x>', "share of the canary's requests replayed on stable for the agreement gate (default 1)")
    .action(
      run(async (name: string, flags: CommonFlags & Record<string, string | undefined>) => {
        const gates: Record<string, number | null> = {};
        if (flags['maxErrorRateDelta'] !== undefined) gates['max_error_rate_delta'] = number(flags['maxErrorRateDelta'], '--max-error-rate-delta');
        if (flags['maxP99Ratio'] !== undefined) gates['max_p99_ratio'] = number(flags['maxP99Ratio'], '--max-p99-ratio');
        if (flags['minAgreement'] !== undefined) gates['min_agreement'] = flags['minAgreement'] === 'none' ? null : number(flags['minAgreement'], '--min-agreement');
        if (flags['minRequests'] !== undefined) gates['min_requests'] = number(flags['minRequests'], '--min-requests');
        const hold = flags['hold'];
        if (hold !== undefined && parseDuration(hold) === undefined) throw new CliError(`--hold '${hold}' is not a duration (e.g. 200ms, 60s, 5m)`);
        const body = {
          version: flags['version'],
          ...(flags['steps'] === undefined ? {} : { steps: flags['steps'].split(',').map((step) => number(step, '--steps')) }),
          ...(hold === undefined ? {} : { hold }),
          ...(flags['stable'] === undefined ? {} : { stable: flags['stable'] }),
          ...(Object.keys(gates).length === 0 ? {} : { gates }),
          ...(flags['mirrorShare'] === undefined ? {} : { mirror: { share: number(flags['mirrorShare'], '--mirror-share') } }),
        };
        const status = (await call(flags, 'POST', `${model(name)}/canary`, body)) as RolloutStatus;
        print(flags, status, () => describeCanary(status));
      }),
    );
  withCommon(canary.command('status <model>').description("the canary's step, share, gate measurements and decisions"))
    .action(
      run(async (name: string, flags: CommonFlags) => {
        const status = (await call(flags, 'GET', `${model(name)}/rollout`)) as RolloutStatus;
        print(flags, status.canary, () => describeCanary(status));
      }),
    );
  withCommon(canary.command('abort <model>').description('stop the canary now: its share goes to 0%'))
    .action(
      run(async (name: string, flags: CommonFlags) => {
        const status = (await call(flags, 'DELETE', `${model(name)}/canary`)) as RolloutStatus;
        print(flags, status, () => describeCanary(status));
      }),
    );

  const alias = program.command('alias').description('named versions (blue-green), switched atomically (management API)');
  withCommon(alias.command('set <model> <alias> <version>').description('point an alias at a version'))
    .action(
      run(async (name: string, aliasName: string, version: string, flags: CommonFlags) => {
        const status = (await call(flags, 'PUT', `${model(name)}/aliases/${encodeURIComponent(aliasName)}`, { version })) as RolloutStatus;
        print(flags, status, () => `${describeAliases(status)}\n`);
      }),
    );
  withCommon(alias.command('rollback <model> <alias>').description('point an alias back at the version it named before'))
    .action(
      run(async (name: string, aliasName: string, flags: CommonFlags) => {
        const status = (await call(flags, 'POST', `${model(name)}/aliases/${encodeURIComponent(aliasName)}/rollback`)) as RolloutStatus;
        print(flags, status, () => `${describeAliases(status)}\n`);
      }),
    );
  withCommon(alias.command('rm <model> <alias>').description('remove an alias'))
    .action(
      run(async (name: string, aliasName: string, flags: CommonFlags) => {
        const status = (await call(flags, 'DELETE', `${model(name)}/aliases/${encodeURIComponent(aliasName)}`)) as RolloutStatus;
        print(flags, status, () => `${describeAliases(status)}\n`);
      }),
    );
  withCommon(alias.command('list <model>').description("a model's aliases"))
    .action(
      run(async (name: string, flags: CommonFlags) => {
        const status = (await call(flags, 'GET', `${model(name)}/rollout`)) as RolloutStatus;
        print(flags, status.aliases, () => `${describeAliases(status)}\n`);
      }),
    );

  const shadow = program.command('shadow').description('mirror a share of live traffic to a shadow version and compare (management API)');
  withCommon(shadow.command('set <model>').description('start (or change) the shadow'))
    .requiredOption('--version <n>', 'the shadow version')
    .option('--share <x>', 'share of requests mirrored (default 0.1)')
    .option('--max-in-flight <n>', 'shadow requests in flight at most; more are dropped (default 4)')
    .action(
      run(async (name: string, flags: CommonFlags & Record<string, string | undefined>) => {
        const body = {
          version: flags['version'],
          ...(flags['share'] === undefined ? {} : { share: number(flags['share'], '--share') }),
          ...(flags['maxInFlight'] === undefined ? {} : { max_in_flight: number(flags['maxInFlight'], '--max-in-flight') }),
        };
        const status = (await call(flags, 'PUT', `${model(name)}/shadow`, body)) as RolloutStatus;
        print(flags, status, () => describeShadow(status));
      }),
    );
  withCommon(shadow.command('status <model>').description("the shadow's agreement, latency, errors and drops"))
    .action(
      run(async (name: string, flags: CommonFlags) => {
        const status = (await call(flags, 'GET', `${model(name)}/rollout`)) as RolloutStatus;
        print(flags, status.shadow, () => describeShadow(status));
      }),
    );
  withCommon(shadow.command('stop <model>').description('stop mirroring'))
    .action(
      run(async (name: string, flags: CommonFlags) => {
        const status = (await call(flags, 'DELETE', `${model(name)}/shadow`)) as RolloutStatus;
        print(flags, status, () => describeShadow(status));
      }),
    );

  const rollout = program.command('rollout').description("a model's whole routing: default, split, aliases, canary, shadow, circuit breakers");
  withCommon(rollout.command('status <model>'))
    .action(
      run(async (name: string, flags: CommonFlags) => {
        const status = (await call(flags, 'GET', `${model(name)}/rollout`)) as RolloutStatus;
        print(flags, status, () => [describeTraffic(status), describeAliases(status), describeCanary(status).trimEnd(), describeShadow(status).trimEnd(), describeCircuits(status)].join('\n') + '\n');
      }),
    );
}

/** `1=90,2=10` -> {"1": 90, "2": 10}. */
export function parseSplit(text: string): Record<string, number> {
  const split: Record<string, number> = {};
  for (const part of text.split(',')) {
    const match = /^\s*(\d+)\s*=\s*(\d+(?:\.\d+)?)\s*$/.exec(part);
    if (match === null) throw new CliError(`'${part}' is not version=weight (e.g. 1=90,2=10)`);
    split[match[1]!] = Number(match[2]);
  }
  return split;
}

function number(text: string, flag: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new CliError(`${flag} '${text}' is not a number`);
  return value;
}

function describeTraffic(status: RolloutStatus): string {
  const split = status.split === null ? 'no split' : `split ${Object.entries(status.split).map(([v, w]) => `${v}=${w}`).join(' ')}`;
  const pinned = status.defaultVersion === null ? '' : ` (pinned: ${status.defaultVersion})`;
  const sticky = status.stickyKey === null ? '' : `; sticky on ${status.stickyKey.source} ${status.stickyKey.name}`;
  return `model ${status.model}: ${split}; default version ${status.servingDefault ?? '-'}${pinned}; ready versions ${status.readyVersions.join(', ') || 'none'}${sticky}`;
}

function describeAliases(status: RolloutStatus): string {
  const entries = Object.entries(status.aliases);
  return `model ${status.model}: ${entries.length === 0 ? 'no aliases' : `aliases ${entries.map(([a, v]) => `${a} -> ${v}`).join(', ')}`}`;
}

function describeCanary(status: RolloutStatus): string {
  const canary = status.canary;
  if (canary === null) return `model ${status.model}: no canary\n`;
  const lines = [`model ${status.model}: canary of version ${canary.version} against version ${canary.stable}: ${phaseLine(canary)}`];
  const current = canary.current;
  if (current !== null) {
    lines.push('  window    requests  errors  error rate  p50 ms  p99 ms');
    for (const [label, window] of [
      ['canary', current.canary],
      ['stable', current.stable],
    ] as const) {
      lines.push(
        `  ${label.padEnd(8)}  ${String(window.requests).padStart(8)}  ${String(window.failures).padStart(6)}  ${pct(window.errorRate).padStart(10)}  ${ms(window.p50Ms).padStart(6)}  ${ms(window.p99Ms).padStart(6)}`,
      );
    }
    const agreement = current.comparisons.agreement === null ? 'no mirrored rows compared yet' : `${pct(current.comparisons.agreement)} over ${current.comparisons.rows} mirrored rows`;
    const gates = canary.gates;
    lines.push(
      `  gates: error rate delta ${pct(current.errorRateDelta)} (max ${pct(gates.max_error_rate_delta)}); ${quantileName(current.latencyQuantile)} latency ratio ${current.p99Ratio?.toFixed(2) ?? '-'} (max ${gates.max_p99_ratio}); agreement ${agreement}${gates.min_agreement === null ? '' : ` (min ${pct(gates.min_agreement)})`}`,
    );
  }
  lines.push('  decisions:');
  for (const decision of canary.history) lines.push(`    ${decisionLine(decision)}`);
  return `${lines.join('\n')}\n`;
}

function phaseLine(canary: CanaryStatus): string {
  const steps = canary.steps.map((s) => `${s}%`).join(' ');
  if (canary.phase === 'running') {
    return `running, step ${canary.stepIndex + 1}/${canary.steps.length} at ${canary.share}%, held ${seconds(canary.heldMs)} of ${formatDuration(canary.holdMs)} (steps ${steps})`;
  }
  const word = { promoted: 'PROMOTED', rolled_back: 'ROLLED BACK', aborted: 'ABORTED' }[canary.phase];
  return `${word} at ${canary.finishedAt ?? '-'}: ${canary.reason ?? ''}`;
}

function decisionLine(decision: CanaryDecision): string {
  return `${decision.at}  ${decision.decision.padEnd(8)}  step ${decision.step + 1}  ${`${decision.share}%`.padStart(4)}  ${decision.reason}`;
}

function describeShadow(status: RolloutStatus): string {
  const shadow = status.shadow;
  if (shadow === null) return `model ${status.model}: no shadow\n`;
  const c = shadow.comparison;
  const agreement = c.agreement === null ? '-' : `${pct(c.agreement)} top-1 agreement over ${c.rows} rows`;
  return [
    `model ${status.model}: shadow version ${shadow.version}, ${pct(shadow.share)} of traffic, at most ${shadow.maxInFlight} in flight`,
    `  sent ${shadow.sent}, succeeded ${shadow.succeeded}, failed ${shadow.failed}, dropped ${shadow.dropped}, in flight ${shadow.inFlight}`,
    `  latency p50 ${ms(shadow.latency.p50Ms)} ms, p99 ${ms(shadow.latency.p99Ms)} ms`,
    `  compared ${c.requests} requests: ${agreement}; mean absolute difference ${c.meanAbsDiff === null ? '-' : c.meanAbsDiff.toPrecision(3)}`,
  ].join('\n') + '\n';
}

function describeCircuits(status: RolloutStatus): string {
  if (status.circuitBreakers.length === 0) return `model ${status.model}: no circuit breakers in use`;
  return status.circuitBreakers
    .map((b) => `model ${status.model} version ${b.version}: circuit ${b.state.replace('_', '-')}, ${b.consecutiveFailures}/${b.failureThreshold} consecutive failures${b.lastFailure === null ? '' : `, last: ${b.lastFailure}`}`)
    .join('\n');
}

/** `12.3s` */
function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

function pct(value: number): string {
  return `${(value * 100).toFixed(1)}%`;
}

function ms(value: number | null): string {
  return value === null ? '-' : value.toFixed(2);
}
