import { availableParallelism } from 'node:os';
import { TesseraError } from '../../core/errors.js';
import type { SessionSettings } from './messages.js';

type Parameters = Readonly<Record<string, string | number | boolean>>;

const OPTIMIZATION_LEVELS = ['disabled', 'basic', 'extended', 'all'] as const;
/**
 * Triton's onnxruntime backend numbers `optimization { graph { level } }`: -1 basic,
 * 1 extended, 2 disabled, anything else all.
 */
const TRITON_LEVELS: Readonly<Record<string, SessionSettings['graphOptimizationLevel']>> = {
  '-1': 'basic',
  '0': 'all',
  '1': 'extended',
  '2': 'disabled',
};

/** Default nice value of compute threads (parameter `compute_thread_nice`): below the event loop's 0. */
export const DEFAULT_COMPUTE_THREAD_NICE = 5;

/**
 * Session settings for one instance of a model with `instanceCount` instances. By default the
 * cores are shared out so that instances x intra-op threads = cores, and threads do not spin
 * (spinning burns the CPU that the server's own threads need on small machines).
 */
export function sessionSettings(parameters: Parameters, instanceCount: number, cores = availableParallelism()): SessionSettings {
  const intra = integer(parameters, 'intra_op_thread_count') ?? 0;
  const inter = integer(parameters, 'inter_op_thread_count') ?? 0;
  const level = String(parameters['graph_optimization_level'] ?? 'all').toLowerCase();
  const graphOptimizationLevel =
    TRITON_LEVELS[level] ?? OPTIMIZATION_LEVELS.find((name) => name === level);
  if (graphOptimizationLevel === undefined) {
    throw new TesseraError('INVALID_MODEL_CONFIG', `parameters.graph_optimization_level: expected one of ${OPTIMIZATION_LEVELS.join(', ')}, got '${level}'`);
  }
  const providers = String(parameters['execution_providers'] ?? 'cpu').split(',').map((p) => p.trim().toLowerCase());
  const unsupported = providers.filter((p) => p !== 'cpu');
  if (unsupported.length > 0) {
    throw new TesseraError('INVALID_MODEL_CONFIG', `parameters.execution_providers: only 'cpu' is available in this build, got '${unsupported.join(',')}'`);
  }
  const mode = String(parameters['execution_mode'] ?? 'sequential');
  if (mode !== 'sequential' && mode !== 'parallel') {
    throw new TesseraError('INVALID_MODEL_CONFIG', `parameters.execution_mode: expected sequential or parallel, got '${mode}'`);
  }
  return {
    intraOpNumThreads: intra > 0 ? intra : Math.max(1, Math.floor(cores / Math.max(1, instanceCount))),
    interOpNumThreads: inter > 0 ? inter : 1,
    graphOptimizationLevel,
    executionMode: mode,
    enableCpuMemArena: boolean(parameters, 'enable_mem_arena') ?? true,
    allowSpinning: boolean(parameters, 'allow_spinning') ?? false,
    computeThreadNice: niceValue(parameters),
  };
}

function niceValue(parameters: Parameters): number {
  const nice = integer(parameters, 'compute_thread_nice') ?? DEFAULT_COMPUTE_THREAD_NICE;
  if (nice > 19) throw new TesseraError('INVALID_MODEL_CONFIG', `parameters.compute_thread_nice: expected 0 to 19, got ${nice}`);
  return nice;
}

function integer(parameters: Parameters, key: string): number | undefined {
  const value = parameters[key];
  if (value === undefined) return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < 0) throw new TesseraError('INVALID_MODEL_CONFIG', `parameters.${key}: expected a non-negative integer, got '${String(value)}'`);
  return n;
}

function boolean(parameters: Parameters, key: string): boolean | undefined {
  const value = parameters[key];
  if (value === undefined) return undefined;
  if (value === true || value === 'true' || value === '1' || value === 1) return true;
  if (value === false || value === 'false' || value === '0' || value === 0) return false;
  throw new TesseraError('INVALID_MODEL_CONFIG', `parameters.${key}: expected true or false, got '${String(value)}'`);
}
