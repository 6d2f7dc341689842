import sharp from 'sharp';
import { z } from 'zod';
import { allocate } from '../../core/datatype.js';
import { TesseraError } from '../../core/errors.js';
import { toHalfBits } from '../../core/float16.js';
import type { Tensor, TensorSpec } from '../../core/tensor.js';
import type { HandlerFile, HandlerInputs, HandlerModelInfo, HandlerRequest, ModelHandler } from './handler.js';
import { cachedPlan, configError, inputFiles, isDistribution, numericValues, OrderedObject, parseOptions, pickInput, pickOutput, rowsOf, softmax } from './common.js';

/**
 * The image classification handler (TorchServe's image_classifier, in TypeScript): decode PNG /
 * JPEG / WebP / ... with sharp, resize (exact size, or shorter side then centre crop, as
 * torchvision's Resize + CenterCrop), pick RGB or BGR, scale to [0, 1], normalise per channel
 * with mean / std, lay out NCHW or NHWC in the model input's datatype; several images in one
 * request form a batch. Postprocess: the top-k classes per image as `{label: probability}`.
 */

const size = z.tuple([z.number().int().min(1).max(16384), z.number().int().min(1).max(16384)]);

export const imageOptionsSchema = z.strictObject({
  /** Model input to fill; default the model's only input. */
  input: z.string().min(1).optional(),
  /** Output holding the class scores; default the first output. */
  output: z.string().min(1).optional(),
  /** Resize every image to exactly [height, width] (aspect ratio not kept). */
  size: size.optional(),
  /** Resize so the shorter side is this long, keeping the aspect ratio. */
  resize: z.number().int().min(1).max(16384).optional(),
  /** After resizing, cut the centre [height, width] (padded with black if the image is smaller). */
  center_crop: size.optional(),
  channel_order: z.enum(['RGB', 'BGR']).default('RGB'),
  /** Default: NCHW when the input's first non-batch dim is 1 or 3, NHWC when its last is. */
  layout: z.enum(['NCHW', 'NHWC']).optional(),
  /** Per-channel mean and std in the model's channel order, applied after scaling; one value applies to all channels. */
  mean: z.array(z.number()).min(1).optional(),
  std: z.array(z.number().refine((v) => v !== 0, 'std must not be 0')).min(1).optional(),
  /** Factor applied to 0..255 pixel values before mean/std; default 1/255 (scale to [0, 1]). */
  scale: z.number().positive().optional(),
  interpolation: z.enum(['nearest', 'bilinear', 'bicubic', 'lanczos3']).default('bilinear'),
  /** Rotate by the EXIF orientation first (photos from phones). */
  auto_orient: z.boolean().default(true),
  /** Classes reported per image. */
  top_k: z.number().int().min(1).default(5),
  /** Softmax the scores: true always, false never; default when they are not already probabilities. */
  apply_softmax: z.boolean().optional(),
  /** `dict`: {label: probability} per image (TorchServe); `list`: [{label, index, probability}] in order. */
  output_format: z.enum(['dict', 'list']).default('dict'),
  /** Largest decoded image, in pixels. */
  max_pixels: z.number().int().min(1).default(100_000_000),
});

export type ImageHandlerOptions = z.output<typeof imageOptionsSchema>;

const KERNELS = { nearest: 'nearest', bilinear: 'linear', bicubic: 'cubic', lanczos3: 'lanczos3' } as const;
type ImageDataType = 'FP32' | 'FP16' | 'FP64' | 'UINT8';

interface ImagePlan {
  readonly options: ImageHandlerOptions;
  readonly input: TensorSpec;
  readonly datatype: ImageDataType;
  readonly layout: 'NCHW' | 'NHWC';
  readonly channels: 1 | 3;
  /** Final image size, or undefined when it follows the image (resize without a crop). */
  readonly height: number | undefined;
  readonly width: number | undefined;
  /** How the batch is laid out: 'batch' = model batch dim; 'fixed' = rank-4 shape of fixed N; 'none' = rank 3. */
  readonly batching: 'batch' | 'fixed' | 'variable' | 'none';
  readonly fixedCount: number;
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly scale: number;
}

interface ImageContext {
  readonly count: number;
  readonly filenames: readonly (string | undefined)[];
}

const plans = new WeakMap<HandlerModelInfo, ImagePlan>();
const parsedOptions = new WeakMap<HandlerModelInfo, ImageHandlerOptions>();

function imageOptions(model: HandlerModelInfo): ImageHandlerOptions {
  return cachedPlan(parsedOptions, model, () => parseOptions(imageOptionsSchema, model.options, 'image'));
}

/** Check the options against the model; INVALID_MODEL_CONFIG when they cannot work. */
export function planImage(model: HandlerModelInfo): ImagePlan {
  return cachedPlan(plans, model, () => {
    const options = imageOptions(model);
    const input = pickInput(model, options.input, 'image');
    const where = `image handler: input '${input.name}'`;
    if (input.datatype !== 'FP32' && input.datatype !== 'FP16' && input.datatype !== 'FP64' && input.datatype !== 'UINT8') {
      throw configError(`${where} is ${input.datatype}; the image handler fills FP32, FP16, FP64 or UINT8 inputs`);
    }
    const shape = input.shape;
    let dims: readonly number[];
    let batching: ImagePlan['batching'];
    let fixedCount = 1;
    if (model.maxBatchSize > 0) {
      dims = shape.slice(1);
      batching = 'batch';
    } else if (shape.length === 4) {
      dims = shape.slice(1);
      fixedCount = shape[0]!;
      batching = fixedCount === -1 ? 'variable' : 'fixed';
    } else {
      dims = shape;
      batching = 'none';
    }
    if (dims.length !== 3) {
      throw configError(`${where} has shape [${shape.join(',')}]; an image input needs 3 dims besides the batch (CHW or HWC)`);
    }
    const layout = options.layout ?? (isChannelDim(dims[0]!) ? 'NCHW' : isChannelDim(dims[2]!) ? 'NHWC' : 'NCHW');
    const [c, h, w] = layout === 'NCHW' ? [dims[0]!, dims[1]!, dims[2]!] : [dims[2]!, dims[0]!, dims[1]!];
    const channels = c === -1 ? 3 : c;
    if (channels !== 1 && channels !== 3) throw configError(`${where} has ${channels} channels in ${layout} layout; the image handler makes 1 (grey) or 3 (colour)`);

    let height: number | undefined;
    let width: number | undefined;
    if (options.center_crop !== undefined) [height, width] = options.center_crop;
    else if (options.size !== undefined) [height, width] = options.size;
    else if (options.resize === undefined && h !== -1 && w !== -1) [height, width] = [h, w];
    if (options.center_crop === undefined && options.size === undefined && options.resize === undefined && (h === -1 || w === -1)) {
      throw configError(`${where} has a variable height or width (shape [${shape.join(',')}]); set handler_options.size or resize + center_crop`);
    }
    if (options.size !== undefined && options.resize !== undefined) throw configError('image handler: set either handler_options.size or handler_options.resize, not both');
    if (height !== undefined && ((h !== -1 && h !== height) || (w !== -1 && w !== width))) {
      throw configError(`${where} takes ${h}x${w} images but handler_options make ${height}x${width}`);
    }
    if (height === undefined && (h !== -1 || w !== -1)) {
      throw configError(`${where} takes a fixed height or width (shape [${shape.join(',')}]); add handler_options.center_crop after resize`);
    }

    const isFloat = input.datatype !== 'UINT8';
    if (!isFloat && (options.mean !== undefined || options.std !== undefined || options.scale !== undefined)) {
      throw configError(`${where} is UINT8: it takes raw 0..255 pixels, so mean, std and scale do not apply`);
    }
    const perChannel = (values: readonly number[] | undefined, fallback: number, name: string): number[] => {
      if (values === undefined) return Array<number>(channels).fill(fallback);
      if (values.length === 1) return Array<number>(channels).fill(values[0]!);
      if (values.length !== channels) throw configError(`image handler: handler_options.${name} has ${values.length} values for ${channels} channel(s)`);
      return [...values];
    };
    return {
      options,
      input,
      datatype: input.datatype,
      layout,
      channels,
      height,
      width,
      batching,
      fixedCount,
      mean: perChannel(options.mean, 0, 'mean'),
      std: perChannel(options.std, 1, 'std'),
      scale: isFloat ? (options.scale ?? 1 / 255) : 1,
    };
  });
}

function isChannelDim(dim: number): boolean {
  return dim === 1 || dim === 3;
}

interface DecodedImage {
  readonly pixels: Buffer; // HWC, uint8, plan.channels channels
  readonly height: number;
  readonly width: number;
}

async function decode(file: HandlerFile, index: number, plan: ImagePlan): Promise<DecodedImage> {
  const name = file.filename === undefined ? `image ${index}` : `image ${index} ('${file.filename}')`;
  const options = plan.options;
  const kernel = KERNELS[options.interpolation];
  try {
    let image = sharp(file.data, { failOn: 'error', limitInputPixels: options.max_pixels });
    if (options.auto_orient) image = image.rotate();
    image = image.removeAlpha().toColourspace(plan.channels === 3 ? 'srgb' : 'b-w');
    if (options.size !== undefined) {
      image = image.resize(options.size[1], options.size[0], { fit: 'fill', kernel });
    } else if (options.resize !== undefined) {
      image = image.resize(options.resize, options.resize, { fit: 'outside', kernel });
    } else if (options.center_crop === undefined && plan.height !== undefined && plan.width !== undefined) {
      image = image.resize(plan.width, plan.height, { fit: 'fill', kernel });
    }
    const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== plan.channels) throw new Error(`decoded ${info.channels} channels, expected ${plan.channels}`);
    const decoded = { pixels: data, height: info.height, width: info.width };
    return options.center_crop === undefined ? decoded : centerCrop(decoded, options.center_crop[0], options.center_crop[1], plan.channels);
  } catch (error) {
    throw new TesseraError('INVALID_INPUT_DATA', `${name} cannot be decoded: ${(error as Error).message}`, { cause: error });
  }
}

/** Python's round(): halves go to the even neighbour (torchvision computes crop offsets with it). */
function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** torchvision's CenterCrop: the centre [h, w], padding with zeros when the image is smaller. */
function centerCrop(image: DecodedImage, h: number, w: number, channels: number): DecodedImage {
  if (image.height === h && image.width === w) return image;
  const out = Buffer.alloc(h * w * channels);
  const top = roundHalfEven((image.height - h) / 2);
  const left = roundHalfEven((image.width - w) / 2);
  for (let y = 0; y < h; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= image.height) continue;
    const x0 = Math.max(0, -left);
    const x1 = Math.min(w, image.width - left);
    if (x1 <= x0) continue;
    const from = (sy * image.width + left + x0) * channels;
    image.pixels.copy(out, (y * w + x0) * channels, from, from + (x1 - x0) * channels);
  }
  return { pixels: out, height: h, width: w };
}

export class ImageHandler implements ModelHandler {
  async preprocess(request: HandlerRequest, model: HandlerModelInfo): Promise<HandlerInputs> {
    const plan = planImage(model);
    // The `data` / `body` parts when the request names any (TorchServe), else every file.
    const files = inputFiles(request).filter((f) => f.data.length > 0);
    const count = files.length;
    if (count === 0) throw new TesseraError('INVALID_INPUT_DATA', 'the request holds no image');
    if (plan.batching === 'batch' && count > model.maxBatchSize) {
      throw new TesseraError('BATCH_TOO_LARGE', `the request holds ${count} images; model '${model.name}' takes at most ${model.maxBatchSize} at once (max_batch_size)`);
    }
    if ((plan.batching === 'none' || plan.batching === 'fixed') && count !== plan.fixedCount) {
      throw new TesseraError('BATCH_TOO_LARGE', `the request holds ${count} images; model '${model.name}' takes exactly ${plan.fixedCount}`);
    }
    const images = await Promise.all(files.map((file, i) => decode(file, i, plan)));
    const first = images[0]!;
    const h = first.height;
    const w = first.width;
    const mismatch = images.findIndex((img) => img.height !== h || img.width !== w);
    if (mismatch !== -1) {
      throw new TesseraError('INVALID_INPUT_DATA', `image ${mismatch} is ${images[mismatch]!.height}x${images[mismatch]!.width} after resizing but image 0 is ${h}x${w}; set handler_options.center_crop or size so a batch has one size`);
    }
    const c = plan.channels;
    const perImage = c * h * w;
    const data = allocate(plan.datatype, count * perImage);
    const float = plan.datatype !== 'UINT8';
    const half = plan.datatype === 'FP16';
    const bgr = plan.options.channel_order === 'BGR' && c === 3;
    // Per channel: value = (pixel * scale - mean) / std  =  pixel * a + b
    const a = plan.std.map((s) => plan.scale / s);
    const b = plan.mean.map((m, i) => -m / plan.std[i]!);
    for (let n = 0; n < count; n++) {
      const pixels = images[n]!.pixels;
      const base = n * perImage;
      for (let ch = 0; ch < c; ch++) {
        const source = bgr ? 2 - ch : ch;
        const ka = a[ch]!;
        const kb = b[ch]!;
        for (let p = 0; p < h * w; p++) {
          const pixel = pixels[p * c + source]!;
          const index = plan.layout === 'NCHW' ? base + ch * h * w + p : base + p * c + ch;
          if (!float) data[index] = pixel;
          else if (half) data[index] = toHalfBits(pixel * ka + kb);
          else data[index] = pixel * ka + kb;
        }
      }
    }
    const imageDims = plan.layout === 'NCHW' ? [c, h, w] : [h, w, c];
    const shape = plan.batching === 'none' ? imageDims : [count, ...imageDims];
    const tensor = { name: plan.input.name, datatype: plan.datatype, shape, data } as Tensor;
    const context: ImageContext = { count, filenames: files.map((f) => f.filename) };
    return { inputs: [tensor], context };
  }

  postprocess(outputs: readonly Tensor[], model: HandlerModelInfo, context: unknown): unknown {
    const options = imageOptions(model);
    const count = (context as ImageContext | undefined)?.count ?? 1;
    const tensor = pickOutput(outputs, options.output, 'image');
    const rows = rowsOf(numericValues(tensor, 'image'), count, tensor, 'image');
    const results = rows.map((row) => topK(row, options, model.labels));
    return count === 1 ? results[0] : results;
  }
}

/**
 * TorchServe-style top-k of one image's scores, highest first. `dict` gives an
 * {@link OrderedObject} of label -> probability (a label that repeats is listed once, at its
 * best score), `list` an array of {label, index, probability}.
 */
export function topK(
  scores: ArrayLike<number>,
  options: Pick<ImageHandlerOptions, 'top_k' | 'apply_softmax' | 'output_format'>,
  labels: readonly string[] | undefined,
): OrderedObject | { label: string; index: number; probability: number }[] {
  const soft = options.apply_softmax ?? !isDistribution(scores);
  const probabilities = soft ? softmax(scores) : Array.from(scores);
  const order = probabilities.map((_, i) => i).sort((x, y) => probabilities[y]! - probabilities[x]! || x - y);
  const labelOf = (i: number): string => labels?.[i] ?? String(i);
  if (options.output_format === 'list') {
    return order.slice(0, options.top_k).map((i) => ({ label: labelOf(i), index: i, probability: probabilities[i]! }));
  }
  const entries: [string, number][] = [];
  const seen = new Set<string>();
  for (const i of order) {
    if (entries.length === options.top_k) break;
    const label = labelOf(i);
    if (seen.has(label)) continue;
    seen.add(label);
    entries.push([label, probabilities[i]!]);
  }
  return new OrderedObject(entries);
}
