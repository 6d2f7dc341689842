import type { DataType, NumericArray } from '../../core/datatype.js';
import type { TensorSpec } from '../../core/tensor.js';

/**
 * Messages between the main thread and a session worker. Numeric data travels as typed arrays
 * whose buffers are transferred, not copied; BYTES elements travel as strings
 * (onnxruntime-node's string tensors take JS strings).
 */

export interface WireTensor {
  readonly name: string;
  readonly datatype: DataType;
  readonly shape: readonly number[];
  readonly data: NumericArray | readonly string[];
}

/** Session options a worker applies (resolved from the model config's parameters). */
export interface SessionSettings {
  readonly intraOpNumThreads: number;
  readonly interOpNumThreads: number;
  readonly graphOptimizationLevel: 'disabled' | 'basic' | 'extended' | 'all';
  readonly executionMode: 'sequential' | 'parallel';
  readonly enableCpuMemArena: boolean;
  readonly allowSpinning: boolean;
  /**
   * Nice value (0-19) of the instance's compute threads: the worker thread and the intra-op
   * threads onnxruntime creates from it. Above the server's own 0, the event loop that receives
   * requests, refuses excess ones and answers health checks is scheduled first when compute
   * has every core busy. 0 leaves priorities alone.
   */
  readonly computeThreadNice: number;
}

export type ToWorker =
  | { readonly kind: 'load'; readonly modelPath: string; readonly settings: SessionSettings }
  | { readonly kind: 'run'; readonly id: number; readonly inputs: readonly WireTensor[]; readonly outputNames: readonly string[] }
  | { readonly kind: 'close' };

export type FromWorker =
  | { readonly kind: 'loaded'; readonly inputs: readonly TensorSpec[]; readonly outputs: readonly TensorSpec[] }
  | { readonly kind: 'load-failed'; readonly message: string }
  | {
      readonly kind: 'result';
      readonly id: number;
      readonly outputs: readonly WireTensor[];
      readonly inputNs: number;
      readonly inferNs: number;
      readonly outputNs: number;
    }
  | { readonly kind: 'failed'; readonly id: number; readonly message: string }
  | { readonly kind: 'closed' };

/** The buffers of `tensors` to transfer, each once (several views may share one buffer). */
export function transferList(tensors: readonly WireTensor[]): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const tensor of tensors) {
    if (!Array.isArray(tensor.data)) {
      const { buffer } = tensor.data as NumericArray;
      if (buffer instanceof ArrayBuffer) buffers.add(buffer);
    }
  }
  return [...buffers];
}
