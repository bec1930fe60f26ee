// edgeadapt.sdk.datasets.omniglot.preprocess_omniglot in JavaScript: an 8-bit grayscale drawing (ink dark) resized
// to 28x28 with Pillow's LANCZOS filter, computed as Pillow computes it (Resample.c: separable passes, horizontal
// then vertical, 8-bit fixed-point coefficients, an 8-bit image between the passes), then ink = 1 - value/255.

export const IMAGE_SIZE = 28;
const PRECISION_BITS = 32 - 8 - 2;
const LANCZOS_SUPPORT = 3.0;

function sinc(x) {
  if (x === 0.0) return 1.0;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

function lanczos(x) {
  return -3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for resizing inSize -> outSize: per output pixel, [xmin, int weights]. */
function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = LANCZOS_SUPPORT * filterScale;
  const taps = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterScale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const weights = [];
    let sum = 0.0;
    for (let x = 0; x < xmax; x++) {
      const w = lanczos((x + xmin - center + 0.5) * ss);
      weights.push(w);
      sum += w;
    }
    const fixed = weights.map((w) => {
      const k = sum !== 0.0 ? w / sum : w;
      return Math.trunc(k < 0 ? -0.5 + k * (1 << PRECISION_BITS) : 0.5 + k * (1 << PRECISION_BITS));
    });
    taps.push({ xmin, fixed });
  }
  return taps;
}

function clip8(value) {
  if (value >= (1 << PRECISION_BITS) * 256) return 255;
  if (value <= 0) return 0;
  return Math.floor(value / (1 << PRECISION_BITS));
}

/** One separable pass over `src` (rows x cols, uint8), along columns when `horizontal`, else along rows. */
function resamplePass(src, rows, cols, outSize, horizontal) {
  const taps = coefficients(horizontal ? cols : rows, outSize);
  const outRows = horizontal ? rows : outSize;
  const outCols = horizontal ? outSize : cols;
  const out = new Uint8Array(outRows * outCols);
  for (let r = 0; r < outRows; r++) {
    for (let c = 0; c < outCols; c++) {
      const { xmin, fixed } = taps[horizontal ? c : r];
      let acc = 1 << (PRECISION_BITS - 1);
      for (let i = 0; i < fixed.length; i++) {
        acc += fixed[i] * (horizontal ? src[r * cols + xmin + i] : src[(xmin + i) * cols + c]);
      }
      out[r * outCols + c] = clip8(acc);
    }
  }
  return out;
}

/** Pillow's Image.resize(..., LANCZOS) of an 8-bit grayscale image (height x width, row-major) to outHeight x outWidth. */
export function resizeLanczos(gray, width, height, outWidth = IMAGE_SIZE, outHeight = outWidth) {
  let image = gray;
  if (width !== outWidth) image = resamplePass(image, height, width, outWidth, true);
  if (height !== outHeight) image = resamplePass(image, height, outWidth, outHeight, false);
  return image;
}

/**
 * edgeadapt.runtime.preprocess.prepare for one 8-bit picture (height x width x channels, row-major, interleaved),
 * by the artifact's input description (manifest.input_shape and manifest.input): each channel resized with
 * Pillow's Lanczos to the input's height x width, scaled to the value range, then normalised by mean / std. Only
 * drawings (modality "strokes", which an artifact without a modality holds) have an ink: `ink` "dark" (dark strokes
 * on light paper, the default) or "light"; a photo is never inverted. Returns a Float32Array of one input.
 */
export function prepareInput(pixels, width, height, channels, manifest, ink = "dark") {
  const [inChannels, outHeight, outWidth] = manifest.input_shape;
  const described = manifest.input;
  const modality = described.modality ?? "strokes";
  if (manifest.input_shape.length !== 3 || !["image", "strokes"].includes(modality)) {
    throw new Error(`prepareInput makes pictures; this model takes ${modality} inputs of shape ${manifest.input_shape}`);
  }
  if (channels !== 1 && channels !== inChannels) throw new Error(`a picture of ${channels} channels for a ${inChannels}-channel model`);
  const invert = modality === "strokes" && (ink === "dark") === ((described.polarity ?? "ink_high") === "ink_high");
  const [low, high] = described.range;
  const out = new Float32Array(inChannels * outHeight * outWidth);
  for (let c = 0; c < inChannels; c++) {
    const plane = new Uint8Array(width * height);
    for (let i = 0; i < plane.length; i++) plane[i] = pixels[i * channels + (channels === 1 ? 0 : c)];
    const small = resizeLanczos(plane, width, height, outWidth, outHeight);
    for (let i = 0; i < small.length; i++) {
      const unit = invert ? 1.0 - small[i] / 255.0 : small[i] / 255.0;
      let value = low + unit * (high - low);
      if (described.mean) value = (value - described.mean[c]) / described.std[c];
      out[c * small.length + i] = value;
    }
  }
  return out;
}

/** preprocess_omniglot for one drawing: 8-bit grayscale (ink dark, height x width) -> Float32Array 28*28, ink = 1.0. */
export function preprocessDrawing(gray, width, height) {
  const small = resizeLanczos(gray, width, height);
  const out = new Float32Array(IMAGE_SIZE * IMAGE_SIZE);
  for (let i = 0; i < out.length; i++) {
    const ink = Math.fround(1.0 - Math.fround(small[i] / 255.0));
    out[i] = Math.min(Math.max(ink, 0.0), 1.0);
  }
  return out;
}
