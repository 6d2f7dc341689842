import type { TensorSpec } from './tensor.js';

/** Model metadata as the V2 protocol reports it. */
export interface ModelMetadata {
  readonly name: string;
  readonly versions: readonly string[];
  readonly platform: string;
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
}

/** Lifecycle state of one model version (the V2 repository extension's `state`). */
export type VersionState = 'LOADING' | 'READY' | 'UNAVAILABLE' | 'UNLOADING';

/** One row of the repository index. */
export interface RepositoryIndexEntry {
  readonly name: string;
  readonly version?: string;
  readonly state: VersionState;
  readonly reason: string;
}

/** Server metadata as the V2 protocol reports it. */
export interface ServerMetadata {
  readonly name: string;
  readonly version: string;
  readonly extensions: readonly string[];
}
