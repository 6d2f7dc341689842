import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, extname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { binIndex } from './psi.js';

/**
 * A drift baseline: per feature, summary statistics and the quantile bins PSI compares the
 * serving traffic against. Stored as `baseline.json` in the model directory
 * (`tessera baseline <model> --data file.csv`) or built from a version's first requests.
 */

export const BASELINE_FORMAT = 'tessera-baseline/1';
export const DEFAULT_BASELINE_FILE = 'baseline.json';
/** Rows sampled (reservoir) to place bin edges and measure bin proportions. */
export const DEFAULT_BASELINE_SAMPLE_ROWS = 100_000;

const baselineFeatureSchema = z
  .strictObject({
    name: z.string().min(1),
    /** Finite values seen. */
    count: z.number().int().min(0),
    mean: z.number(),
    std: z.number().min(0),
    min: z.number(),
    max: z.number(),
    /** Ascending inner bin edges (bins = edges + 1; bin 0 is below edges[0]). */
    edges: z.array(z.number()),
    /** Share of baseline values in each bin (sums to 1). */
    proportions: z.array(z.number().min(0).max(1)),
  })
  .refine((f) => f.proportions.length === f.edges.length + 1, { message: 'proportions must have one entry more than edges' })
  .refine((f) => f.edges.every((edge, i) => i === 0 || edge > (f.edges[i - 1] as number)), { message: 'edges must be strictly ascending' });

export const baselineSchema = z.strictObject({
  format: z.literal(BASELINE_FORMAT),
  /** ISO time the baseline was computed. */
  created: z.string(),
  /** Where it came from: a data file name, or `traffic`. */
  source: z.string().optional(),
  rows: z.number().int().min(0),
  sample_rows: z.number().int().min(0),
  bins: z.number().int().min(2),
  features: z.array(baselineFeatureSchema),
});

export type Baseline = z.output<typeof baselineSchema>;
export type BaselineFeature = Baseline['features'][number];

export interface BaselineOptions {
  /** Bins per feature (default 10). Features with few distinct values get fewer. */
  readonly bins?: number;
  /** Feature names; default `f0`, `f1`, ... */
  readonly featureNames?: readonly string[];
  /** Rows kept (reservoir sample) for bin edges and proportions; statistics use every row. */
  readonly maxSampleRows?: number;
  /** Recorded in the file. */
  readonly source?: string;
  /** Seed of the reservoir sampler (deterministic baselines). */
  readonly seed?: number;
}

/**
 * Accumulates rows (one number per feature, NaN for missing) into a baseline in bounded memory:
 * exact count/mean/std/min/max per feature (Welford) over every row, a seeded reservoir sample
 * of at most `maxSampleRows` rows for the quantile bin edges and bin proportions.
 */
export class BaselineBuilder {
  private features = -1;
  private rows = 0;
  private sample = new Float64Array(0);
  private sampled = 0;
  private count = new Float64Array(0);
  private mean = new Float64Array(0);
  private m2 = new Float64Array(0);
  private min = new Float64Array(0);
  private max = new Float64Array(0);
  private readonly capacity: number;
  private readonly random: () => number;

  constructor(private readonly options: BaselineOptions = {}) {
    this.capacity = Math.max(1, options.maxSampleRows ?? DEFAULT_BASELINE_SAMPLE_ROWS);
    this.random = seeded(options.seed ?? 0x7e55e7a);
  }

  get rowCount(): number {
    return this.rows;
  }

  /** Add one row. Every row must have the same number of values. */
  add(row: ArrayLike<number>): void {
    if (this.features < 0) this.init(row.length);
    if (row.length !== this.features) throw new Error(`row ${this.rows + 1} has ${row.length} values; expected ${this.features}`);
    const f = this.features;
    for (let i = 0; i < f; i++) {
      const v = row[i] as number;
      if (!Number.isFinite(v)) continue;
      const n = (this.count[i] as number) + 1;
      this.count[i] = n;
      const delta = v - (this.mean[i] as number);
      this.mean[i] = (this.mean[i] as number) + delta / n;
      this.m2[i] = (this.m2[i] as number) + delta * (v - (this.mean[i] as number));
      if (v < (this.min[i] as number)) this.min[i] = v;
      if (v > (this.max[i] as number)) this.max[i] = v;
    }
    this.rows++;
    let slot = -1;
    if (this.sampled < this.capacity) slot = this.sampled++;
    else {
      const j = Math.floor(this.random() * this.rows);
      if (j < this.capacity) slot = j;
    }
    if (slot >= 0) {
      if ((slot + 1) * f > this.sample.length) this.grow();
      for (let i = 0; i < f; i++) this.sample[slot * f + i] = row[i] as number;
    }
  }

  /** The baseline of the rows added so far. Throws when no row was added. */
  finish(): Baseline {
    if (this.features < 0) throw new Error('no rows: a baseline needs at least one row');
    const bins = this.options.bins ?? 10;
    const f = this.features;
    const names = this.options.featureNames;
    if (names !== undefined && names.length !== f) throw new Error(`${names.length} feature names for ${f} features`);
    const values = new Float64Array(this.sampled);
    const features: BaselineFeature[] = [];
    for (let i = 0; i < f; i++) {
      let n = 0;
      for (let r = 0; r < this.sampled; r++) {
        const v = this.sample[r * f + i] as number;
        if (Number.isFinite(v)) values[n++] = v;
      }
      const sorted = values.subarray(0, n).sort();
      const edges = quantileEdges(sorted, bins);
      const counts = new Array<number>(edges.length + 1).fill(0);
      for (const v of sorted) counts[binIndex(edges, v)]! += 1;
      const count = this.count[i] as number;
      features.push({
        name: names?.[i] ?? `f${i}`,
        count,
        mean: count > 0 ? (this.mean[i] as number) : 0,
        std: count > 1 ? Math.sqrt((this.m2[i] as number) / (count - 1)) : 0,
        min: count > 0 ? (this.min[i] as number) : 0,
        max: count > 0 ? (this.max[i] as number) : 0,
        edges,
        proportions: counts.map((c) => (n > 0 ? c / n : 1 / counts.length)),
      });
    }
    return {
      format: BASELINE_FORMAT,
      created: new Date().toISOString(),
      ...(this.options.source === undefined ? {} : { source: this.options.source }),
      rows: this.rows,
      sample_rows: this.sampled,
      bins,
      features,
    };
  }

  private init(features: number): void {
    if (features === 0) throw new Error('rows must have at least one value');
    this.features = features;
    this.count = new Float64Array(features);
    this.mean = new Float64Array(features);
    this.m2 = new Float64Array(features);
    this.min = new Float64Array(features).fill(Infinity);
    this.max = new Float64Array(features).fill(-Infinity);
  }

  private grow(): void {
    const rows = Math.min(this.capacity, Math.max(1024, (this.sample.length / this.features) * 2));
    const next = new Float64Array(rows * this.features);
    next.set(this.sample);
    this.sample = next;
  }
}

/**
 * Inner edges of `bins` quantile bins of ascending `sorted` values: the i/bins quantiles,
 * keeping only edges above the minimum and strictly ascending (a feature with few distinct
 * values gets fewer bins; a constant feature gets one bin and never drifts by PSI).
 */
export function quantileEdges(sorted: ArrayLike<number>, bins: number): number[] {
  const n = sorted.length;
  const edges: number[] = [];
  if (n === 0) return edges;
  const lowest = sorted[0] as number;
  for (let i = 1; i < bins; i++) {
    const edge = sorted[Math.min(n - 1, Math.floor((i * n) / bins))] as number;
    if (edge > lowest && (edges.length === 0 || edge > (edges[edges.length - 1] as number))) edges.push(edge);
  }
  return edges;
}

/** The baseline of `rows` (each an array of feature values). */
export function computeBaseline(rows: Iterable<ArrayLike<number>>, options: BaselineOptions = {}): Baseline {
  const builder = new BaselineBuilder(options);
  for (const row of rows) builder.add(row);
  return builder.finish();
}

/** The baseline of rows from an async source (e.g. {@link readRowFile}). */
export async function computeBaselineAsync(rows: AsyncIterable<ArrayLike<number>> | Iterable<ArrayLike<number>>, options: BaselineOptions = {}): Promise<Baseline> {
  const builder = new BaselineBuilder(options);
  for await (const row of rows) builder.add(row);
  return builder.finish();
}

/** `target` is a model directory (→ `<dir>/baseline.json`) or a `.json` file path. */
export async function baselinePath(target: string, fileName = DEFAULT_BASELINE_FILE): Promise<string> {
  if (extname(target).toLowerCase() === '.json') return target;
  try {
    if ((await stat(target)).isDirectory()) return join(target, fileName);
  } catch {
    // missing: treated as a directory to create
  }
  return join(target, fileName);
}

/**
 * Compute a baseline from `rows` and write it atomically (temp file + rename) to `target`
 * (a model directory or a `.json` path). Returns the path written and the baseline.
 */
export async function writeBaseline(
  target: string,
  rows: AsyncIterable<ArrayLike<number>> | Iterable<ArrayLike<number>>,
  options: BaselineOptions & { readonly fileName?: string } = {},
): Promise<{ path: string; baseline: Baseline }> {
  const baseline = await computeBaselineAsync(rows, options);
  const path = await baselinePath(target, options.fileName);
  await saveBaseline(path, baseline);
  return { path, baseline };
}

/** Write a baseline to `path` atomically. */
export async function saveBaseline(path: string, baseline: Baseline): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(baseline, null, 2)}\n`);
  await rename(temp, path);
}

/** Read and validate a baseline file; throws with the file name and what is wrong. */
export async function readBaseline(path: string): Promise<Baseline> {
  const text = await readFile(path, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${path} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = baselineSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(`${path} is not a Tessera baseline: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/** Rows of numbers read from a data file, with the column names when the file has them. */
export interface RowFile {
  /** Column names: the CSV header, or the keys of the first JSONL object. */
  readonly featureNames: readonly string[] | undefined;
  readonly rows: AsyncIterable<number[]>;
}

/**
 * Open a CSV or JSONL file of numeric rows. CSV (`.csv`, `.tsv`, `.txt`): comma- (or tab-)
 * separated numbers, an optional header line (detected: a field that is not a number); an
 * empty field is NaN (missing). JSONL (`.jsonl`, `.ndjson`, or a first character `[`/`{`):
 * one JSON array of numbers per line, or one object of name → number (keys of the first object
 * name the features; a missing key or null is NaN). Blank lines are skipped. A malformed line
 * throws with its line number.
 */
export async function readRowFile(path: string): Promise<RowFile> {
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  const iterator = lines[Symbol.asyncIterator]();
  let lineNo = 0;
  let first: string | undefined;
  for (;;) {
    const next = await iterator.next();
    if (next.done === true) break;
    lineNo++;
    if (next.value.trim() !== '') {
      first = next.value;
      break;
    }
  }
  const ext = extname(path).toLowerCase();
  const firstChar = first?.trimStart()[0];
  const jsonl = ext === '.jsonl' || ext === '.ndjson' || (ext !== '.csv' && ext !== '.tsv' && (firstChar === '[' || firstChar === '{'));
  const firstLineNo = lineNo;

  async function* remaining(): AsyncGenerator<[string, number]> {
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done === true) return;
        lineNo++;
        if (next.value.trim() !== '') yield [next.value, lineNo];
      }
    } finally {
      lines.close();
    }
  }

  if (first === undefined) {
    lines.close();
    return { featureNames: undefined, rows: (async function* () {})() };
  }

  if (jsonl) {
    let names: string[] | undefined;
    const firstValue = parseJsonLine(first, `${path}:${firstLineNo}`);
    if (!Array.isArray(firstValue)) names = Object.keys(firstValue);
    const toRow = (value: number[] | Record<string, number>, at: number): number[] => {
      if (Array.isArray(value)) {
        if (names !== undefined) throw new Error(`${path}:${at}: expected an object like line ${firstLineNo}`);
        return value;
      }
      if (names === undefined) throw new Error(`${path}:${at}: expected an array like line ${firstLineNo}`);
      return names.map((name) => value[name] ?? Number.NaN);
    };
    return {
      featureNames: names,
      rows: (async function* () {
        yield toRow(firstValue, firstLineNo);
        for await (const [line, at] of remaining()) yield toRow(parseJsonLine(line, `${path}:${at}`), at);
      })(),
    };
  }

  const separator = ext === '.tsv' || (first.includes('\t') && !first.includes(',')) ? '\t' : ',';
  const firstFields = first.split(separator).map((field) => field.trim());
  const header = firstFields.some((field) => field !== '' && !Number.isFinite(Number(field)) && !/^[+-]?(nan|inf(inity)?)$/i.test(field));
  const names = header ? firstFields.map((field) => field.replace(/^"(.*)"$/, '$1')) : undefined;
  const width = firstFields.length;
  const toRow = (line: string, at: number): number[] => {
    const fields = line.split(separator);
    if (fields.length !== width) throw new Error(`${path}:${at}: ${fields.length} fields; expected ${width}`);
    return fields.map((field) => {
      const text = field.trim();
      if (text === '') return Number.NaN;
      const value = parseNumber(text);
      if (value === undefined) throw new Error(`${path}:${at}: '${text}' is not a number`);
      return value;
    });
  };
  return {
    featureNames: names,
    rows: (async function* () {
      if (!header) yield toRow(first, firstLineNo);
      for await (const [line, at] of remaining()) yield toRow(line, at);
    })(),
  };
}

/**
 * What `tessera baseline <model> --data <file>` does: read a CSV/JSONL file of rows and write
 * the baseline to `target` (the model directory or a .json path). Feature names: `featureNames`
 * if given; else the file's header/keys; else `defaultFeatureNames` (e.g. the model's
 * `monitoring.features`, for a file without a header); else f0, f1, ...
 */
export async function createBaselineFromFile(
  dataFile: string,
  target: string,
  options: BaselineOptions & { readonly fileName?: string; readonly defaultFeatureNames?: readonly string[] } = {},
): Promise<{ path: string; baseline: Baseline }> {
  const file = await readRowFile(dataFile);
  const featureNames = options.featureNames ?? file.featureNames ?? options.defaultFeatureNames;
  return writeBaseline(target, file.rows, {
    ...options,
    ...(featureNames === undefined ? {} : { featureNames }),
    source: options.source ?? dataFile,
  });
}

function parseNumber(text: string): number | undefined {
  const lower = text.toLowerCase();
  if (lower === 'nan') return Number.NaN;
  if (/^[+]?inf(inity)?$/.test(lower)) return Infinity;
  if (/^-inf(inity)?$/.test(lower)) return -Infinity;
  const value = Number(text);
  return Number.isNaN(value) ? undefined : value;
}

function parseJsonLine(line: string, at: string): number[] | Record<string, number> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new Error(`${at}: not valid JSON: ${(error as Error).message}`);
  }
  const num = (v: unknown): number => {
    if (v === null) return Number.NaN;
    if (typeof v === 'number') return v;
    throw new Error(`${at}: ${JSON.stringify(v)} is not a number`);
  };
  if (Array.isArray(value)) return value.map(num);
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, number> = {};
    for (const [key, v] of Object.entries(value)) out[key] = num(v);
    return out;
  }
  throw new Error(`${at}: expected a JSON array or object of numbers`);
}

/** mulberry32: small seeded PRNG for the reservoir. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
