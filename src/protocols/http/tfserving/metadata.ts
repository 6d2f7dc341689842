import type { DataType } from '../../../core/datatype.js';
import { TesseraError } from '../../../core/errors.js';
import type { RepositoryIndexEntry, VersionState } from '../../../core/metadata.js';
import type { TensorSpec } from '../../../core/tensor.js';
import type { Engine } from '../../../engine/engine.js';

/**
 * TF Serving's model status and metadata answers (api_rest.md "Model status API" and the
 * metadata endpoint), as JSON of GetModelStatusResponse and GetModelMetadataResponse, built from
 * Tessera's repository index and V2 metadata.
 */

/** The one signature Tessera models expose (TF's DEFAULT_SERVING_SIGNATURE_DEF_KEY). */
export const SERVING_SIGNATURE = 'serving_default';

/** tensorflow DataType enum names (types.proto) of V2 datatypes. */
const TF_DTYPE: Readonly<Record<DataType, string>> = {
  BOOL: 'DT_BOOL',
  UINT8: 'DT_UINT8',
  UINT16: 'DT_UINT16',
  UINT32: 'DT_UINT32',
  UINT64: 'DT_UINT64',
  INT8: 'DT_INT8',
  INT16: 'DT_INT16',
  INT32: 'DT_INT32',
  INT64: 'DT_INT64',
  FP16: 'DT_HALF',
  FP32: 'DT_FLOAT',
  FP64: 'DT_DOUBLE',
  BYTES: 'DT_STRING',
};

/** ModelVersionStatus.State (get_model_status.proto) of a version state. */
const TF_STATE: Readonly<Record<VersionState, string>> = {
  LOADING: 'LOADING',
  READY: 'AVAILABLE',
  UNLOADING: 'UNLOADING',
  UNAVAILABLE: 'END',
};

interface ModelVersionStatus {
  readonly version: string;
  readonly state: string;
  readonly status: { readonly error_code: string; readonly error_message: string };
}

/** GetModelStatusResponse of `model`, every version or only `version`. */
export function modelStatus(engine: Engine, model: string, version: string | undefined): { model_version_status: ModelVersionStatus[] } {
  const entries = engine.repositoryIndex().filter((entry) => entry.name === model);
  if (entries.length === 0) throw new TesseraError('MODEL_NOT_FOUND', `model '${model}' is not in the repository`);
  const broken = entries.find((entry) => entry.version === undefined);
  if (broken !== undefined) throw new TesseraError('MODEL_UNAVAILABLE', `model '${model}' is unavailable: ${broken.reason}`);
  const selected = version === undefined ? entries : entries.filter((entry) => entry.version === version);
  if (selected.length === 0) {
    throw new TesseraError('MODEL_VERSION_NOT_FOUND', `model '${model}' has no version '${version}'; its versions are: ${entries.map((e) => e.version).join(', ')}`);
  }
  // Ascending version numbers, whatever order the versions finished loading in.
  const ordered = [...selected].sort((a, b) => Number(a.version) - Number(b.version));
  return { model_version_status: ordered.map(versionStatus) };
}

function versionStatus(entry: RepositoryIndexEntry): ModelVersionStatus {
  const failed = entry.state === 'UNAVAILABLE';
  return {
    version: entry.version!,
    state: TF_STATE[entry.state],
    status: { error_code: failed ? 'UNKNOWN' : 'OK', error_message: failed ? entry.reason : '' },
  };
}

/** GetModelMetadataResponse: model_spec and a SignatureDefMap with serving_default. */
export function modelMetadata(engine: Engine, model: string, version: string | undefined): object {
  const metadata = engine.modelMetadata(model, version);
  // Without a version: the one serving requests that name none (a pinned default, else the highest READY).
  const served = version ?? engine.servingVersions(model)?.defaultVersion ?? highest(metadata.versions);
  return {
    model_spec: { name: model, signature_name: '', version: served },
    metadata: {
      signature_def: {
        signature_def: {
          [SERVING_SIGNATURE]: {
            inputs: tensorInfoMap(metadata.inputs),
            outputs: tensorInfoMap(metadata.outputs),
            method_name: 'tensorflow/serving/predict',
          },
        },
      },
    },
  };
}

function tensorInfoMap(specs: readonly TensorSpec[]): Record<string, object> {
  return Object.fromEntries(
    specs.map((spec) => [
      spec.name,
      {
        dtype: TF_DTYPE[spec.datatype],
        tensor_shape: { dim: spec.shape.map((size) => ({ size: String(size), name: '' })), unknown_rank: false },
        name: spec.name,
      },
    ]),
  );
}

function highest(versions: readonly string[]): string {
  let best = '';
  for (const v of versions) if (best === '' || Number(v) > Number(best)) best = v;
  return best;
}
