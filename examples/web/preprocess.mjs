// What an app has to what an artifact takes, in JavaScript (browsers, Node.js, React Native):
// - prepareInput: edgeadapt.runtime.preprocess.prepare for one 8-bit picture (camera frame, canvas ImageData, file),
//   resized with Pillow's LANCZOS filter computed as Pillow computes it (Resample.c: separable passes, horizontal
//   then vertical, 8-bit fixed-point coefficients, an 8-bit image between the passes);
// - prepareAudio: edgeadapt.runtime.audio.clip_features for one raw clip (resampled by the same FFT method, then the
//   same log-mel spectrogram);
// - preprocessDrawing: edgeadapt.sdk.datasets.omniglot.preprocess_omniglot (28x28, ink = 1 - value/255), bit for bit.

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

const LUMA = [19595, 38470, 7471]; // Pillow's convert("L") weights of R, G, B, in 1/65536
const CHANNEL_ORDERS = ["rgb", "bgr"];

/** Python's round(): halves go to the even neighbour (Math.round sends them up). */
export function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * edgeadapt.runtime.preprocess.centre_box: [top, left, boxHeight, boxWidth], the largest box of outHeight:outWidth's
 * aspect ratio centred in a height x width picture (the input description's fit "crop"), as training cuts it.
 */
export function centreBox(height, width, outHeight, outWidth) {
  const boxWidth = Math.max(1, Math.min(width, roundHalfEven((height * outWidth) / outHeight)));
  const boxHeight = Math.max(1, Math.min(height, roundHalfEven((width * outHeight) / outWidth)));
  return [Math.floor((height - boxHeight) / 2), Math.floor((width - boxWidth) / 2), boxHeight, boxWidth];
}

function checkPixels(pixels, width, height, channels) {
  for (const [name, value] of [["width", width], ["height", height], ["channels", channels]]) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${value}`);
  }
  if (!pixels || pixels.length !== width * height * channels) {
    throw new Error(`pixels must hold width * height * channels = ${width * height * channels} values, got ${pixels?.length}`);
  }
  if (!(pixels instanceof Uint8Array || pixels instanceof Uint8ClampedArray)) {
    if (!Array.from(pixels).every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) {
      throw new Error("pixels must be 8-bit values (a Uint8Array, a Uint8ClampedArray such as ImageData.data, or integers 0..255)");
    }
  }
}

/** The source channel each model channel reads (RGBA / BGRA: alpha dropped; BGR: reordered), or "luma" / "gray". */
function channelSources(channels, inChannels, channelOrder) {
  if (!CHANNEL_ORDERS.includes(channelOrder)) throw new Error(`channelOrder must be one of ${CHANNEL_ORDERS}, got ${channelOrder}`);
  const have = channels === 4 && inChannels !== 4 ? 3 : channels;
  const order = channelOrder === "bgr" && have >= 3 ? [2, 1, 0, 3] : [0, 1, 2, 3];
  if (have === inChannels) return order.slice(0, inChannels);
  if (have === 1) return new Array(inChannels).fill(0);
  if (have === 3 && inChannels === 1) return ["luma"];
  throw new Error(`a picture of ${channels} channels; a ${inChannels}-channel model takes pictures of 1 (gray), 3 (RGB / BGR) or 4 (RGBA / BGRA) channels`);
}

/** One model channel at the picture's size, 8-bit: a source channel, or Pillow's luma of R, G, B (in that order). */
function plane(pixels, size, channels, source, channelOrder) {
  const out = new Uint8Array(size);
  if (source !== "luma") {
    for (let i = 0; i < size; i++) out[i] = pixels[i * channels + source];
    return out;
  }
  const [r, g, b] = channelOrder === "bgr" ? [2, 1, 0] : [0, 1, 2];
  for (let i = 0; i < size; i++) {
    const p = i * channels;
    out[i] = (pixels[p + r] * LUMA[0] + pixels[p + g] * LUMA[1] + pixels[p + b] * LUMA[2] + 0x8000) >>> 16;
  }
  return out;
}

function cropPlane(gray, width, [top, left, boxHeight, boxWidth]) {
  const out = new Uint8Array(boxHeight * boxWidth);
  for (let r = 0; r < boxHeight; r++) out.set(gray.subarray((top + r) * width + left, (top + r) * width + left + boxWidth), r * boxWidth);
  return out;
}

/** (unit, channel) => the model's value: a value in [0, 1] scaled to the description's range, then normalised. */
function scaling(described) {
  const [low, high] = described.range;
  return (unit, c) => {
    const value = low + unit * (high - low);
    return described.mean ? (value - described.mean[c]) / described.std[c] : value;
  };
}

function pictureModel(manifest) {
  const modality = manifest.input.modality ?? "strokes";
  if (manifest.input_shape.length !== 3 || !["image", "strokes"].includes(modality)) {
    throw new Error(`prepareInput makes pictures; this model takes ${modality} inputs of shape ${manifest.input_shape}` +
      (modality === "audio_features" ? " (clips: prepareAudio)" : ""));
  }
  return modality;
}

/**
 * edgeadapt.runtime.preprocess.prepare for one 8-bit picture (height x width x channels, row-major, interleaved),
 * by the artifact's input description (manifest.input_shape and manifest.input): a camera frame or file of any size,
 * gray (1 channel), RGB or BGR (3), RGBA or BGRA (4: a canvas's getImageData().data; alpha is dropped). It becomes
 * the model's channels (Pillow's luma for a 1-channel model, gray repeated for a 3-channel one), is centre-cropped
 * to the input's aspect ratio when the description's fit is "crop", each channel resized with Pillow's Lanczos to
 * the input's height x width, scaled to the value range, then normalised by mean / std. Only drawings (modality
 * "strokes", which an artifact without a modality holds) have an ink: "dark" (dark strokes on light paper, the
 * default) or "light"; a photo is never inverted. `options` is { ink, channelOrder: "rgb" (default) | "bgr" }, or
 * the ink itself (a string). Returns a Float32Array of one input.
 */
export function prepareInput(pixels, width, height, channels, manifest, options = {}) {
  const { ink = "dark", channelOrder = "rgb" } = typeof options === "string" ? { ink: options } : options;
  const [inChannels, outHeight, outWidth] = manifest.input_shape;
  const described = manifest.input;
  const modality = pictureModel(manifest);
  checkPixels(pixels, width, height, channels);
  const sources = channelSources(channels, inChannels, channelOrder);
  const box = described.fit === "crop" ? centreBox(height, width, outHeight, outWidth) : [0, 0, height, width];
  const invert = modality === "strokes" && (ink === "dark") === ((described.polarity ?? "ink_high") === "ink_high");
  const scale = scaling(described);
  const out = new Float32Array(inChannels * outHeight * outWidth);
  sources.forEach((source, c) => {
    let gray = plane(pixels, width * height, channels, source, channelOrder);
    if (described.fit === "crop") gray = cropPlane(gray, width, box);
    const small = resizeLanczos(gray, box[3], box[2], outWidth, outHeight);
    for (let i = 0; i < small.length; i++) out[c * small.length + i] = scale(invert ? 1.0 - small[i] / 255.0 : small[i] / 255.0, c);
  });
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

// --- sound: edgeadapt.runtime.audio in JavaScript ---

/** The discrete Fourier transform of (re, im), in place, of a power-of-two length (iterative radix 2). */
function fftPow2(re, im, inverse) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const step = ((inverse ? 2 : -2) * Math.PI) / size;
    for (let k = 0; k < size / 2; k++) {
      const wr = Math.cos(step * k);
      const wi = Math.sin(step * k);
      for (let start = 0; start < n; start += size) {
        const a = start + k;
        const b = a + size / 2;
        const tr = re[b] * wr - im[b] * wi;
        const ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] += tr;
        im[a] += ti;
      }
    }
  }
}

/** The unnormalised DFT (inverse: e^{+i...}) of (re, im) of any length, as new Float64Arrays: Bluestein's chirp-z. */
function dft(re, im, inverse = false) {
  const n = re.length;
  if ((n & (n - 1)) === 0) {
    const [outRe, outIm] = [Float64Array.from(re), Float64Array.from(im)];
    fftPow2(outRe, outIm, inverse);
    return [outRe, outIm];
  }
  let m = 1;
  while (m < 2 * n - 1) m <<= 1;
  const sign = inverse ? 1 : -1;
  const [chirpRe, chirpIm] = [new Float64Array(n), new Float64Array(n)];
  for (let k = 0; k < n; k++) {
    const angle = (sign * Math.PI * ((k * k) % (2 * n))) / n;
    [chirpRe[k], chirpIm[k]] = [Math.cos(angle), Math.sin(angle)];
  }
  const [aRe, aIm, bRe, bIm] = [new Float64Array(m), new Float64Array(m), new Float64Array(m), new Float64Array(m)];
  for (let k = 0; k < n; k++) {
    aRe[k] = re[k] * chirpRe[k] - im[k] * chirpIm[k];
    aIm[k] = re[k] * chirpIm[k] + im[k] * chirpRe[k];
    [bRe[k], bIm[k]] = [chirpRe[k], -chirpIm[k]];
    if (k > 0) [bRe[m - k], bIm[m - k]] = [chirpRe[k], -chirpIm[k]];
  }
  fftPow2(aRe, aIm, false);
  fftPow2(bRe, bIm, false);
  for (let k = 0; k < m; k++) [aRe[k], aIm[k]] = [aRe[k] * bRe[k] - aIm[k] * bIm[k], aRe[k] * bIm[k] + aIm[k] * bRe[k]];
  fftPow2(aRe, aIm, true);
  const [outRe, outIm] = [new Float64Array(n), new Float64Array(n)];
  for (let k = 0; k < n; k++) {
    const [cr, ci] = [aRe[k] / m, aIm[k] / m];
    outRe[k] = cr * chirpRe[k] - ci * chirpIm[k];
    outIm[k] = cr * chirpIm[k] + ci * chirpRe[k];
  }
  return [outRe, outIm];
}

/** runtime.audio.resample: float samples at `rate` Hz to `target` Hz, the spectrum truncated or zero-padded. */
export function resample(samples, rate, target) {
  if (rate === target) return samples;
  const n = samples.length;
  const nOut = Math.max(roundHalfEven((n * target) / rate), 1);
  const [re, im] = dft(samples, new Float64Array(n));
  const keep = Math.min(Math.floor(n / 2) + 1, Math.floor(nOut / 2) + 1);
  const [fullRe, fullIm] = [new Float64Array(nOut), new Float64Array(nOut)];
  fullRe[0] = re[0]; // numpy's irfft reads the real part of the first bin, and of the last when nOut is even
  for (let k = 1; k < keep; k++) {
    fullRe[k] = re[k];
    if (2 * k === nOut) continue;
    [fullIm[k], fullRe[nOut - k], fullIm[nOut - k]] = [im[k], re[k], -im[k]];
  }
  const [back] = dft(fullRe, fullIm, true);
  return Float32Array.from(back, (v) => v / n); // irfft's 1/nOut times the amplitude's nOut / n
}

/** runtime.audio.mel_filters: n_mels rows of n_fft / 2 + 1 float32 weights, triangles even on the mel scale. */
function melFilters(nMels, nFft, sampleRate) {
  const linspace = (stop, count) => Array.from({ length: count }, (_, i) => (i === count - 1 ? stop : (i * stop) / (count - 1)));
  const mel = (hz) => 2595.0 * Math.log10(1.0 + hz / 700.0);
  const edges = linspace(mel(sampleRate / 2), nMels + 2).map((m) => 700.0 * (10 ** (m / 2595.0) - 1.0));
  const bins = linspace(sampleRate / 2, Math.floor(nFft / 2) + 1);
  return Array.from({ length: nMels }, (_, m) => {
    const [low, centre, high] = edges.slice(m, m + 3);
    return Float32Array.from(bins, (hz) => Math.max(Math.min((hz - low) / Math.max(centre - low, 1e-9),
      (high - hz) / Math.max(high - centre, 1e-9)), 0.0));
  });
}

/** The clip centred in (cropped or zero-padded to) `length` samples. */
function centred(samples, length) {
  const start = Math.max(Math.floor((samples.length - length) / 2), 0);
  const clip = samples.subarray(start, start + length);
  const out = new Float32Array(length);
  out.set(clip, Math.floor((length - clip.length) / 2));
  return out;
}

/** runtime.audio.log_mel with AudioFeatures settings: a Float32Array of n_mels x frames, highest band first. */
function logMel(samples, audio) {
  const { sample_rate: rate, n_mels: nMels, frames, duration, n_fft: nFft, dynamic_range_db: range } = audio;
  const length = roundHalfEven(duration * rate);
  const clip = centred(samples, length);
  const hop = (length - nFft) / Math.max(frames - 1, 1);
  const window = Float32Array.from({ length: nFft }, (_, k) => (nFft === 1 ? 1 : 0.5 + 0.5 * Math.cos((Math.PI * (1 - nFft + 2 * k)) / (nFft - 1))));
  const filters = melFilters(nMels, nFft, rate);
  const energy = new Float64Array(nMels * frames);
  for (let f = 0; f < frames; f++) {
    const start = roundHalfEven(f * hop);
    const frame = Float32Array.from(window, (w, k) => clip[start + k] * w);
    const [re, im] = dft(frame, new Float64Array(nFft));
    filters.forEach((row, m) => {
      let sum = 0;
      for (let k = 0; k < row.length; k++) sum += row[k] * (re[k] * re[k] + im[k] * im[k]);
      energy[m * frames + f] = 10.0 * Math.log10(Math.max(sum, 1e-10));
    });
  }
  const loudest = energy.reduce((a, b) => Math.max(a, b), -Infinity);
  const out = new Float32Array(nMels * frames);
  for (let m = 0; m < nMels; m++) {
    for (let f = 0; f < frames; f++) {
      out[(nMels - 1 - m) * frames + f] = Math.min(Math.max((energy[m * frames + f] - loudest) / range + 1.0, 0.0), 1.0);
    }
  }
  return out;
}

/**
 * edgeadapt.runtime.preprocess.prepare_audio for one raw mono clip: `samples` (a Float32Array in [-1, 1] or an
 * Int16Array, e.g. from the Web Audio API or a WAV file) recorded at `sampleRate` Hz, resampled to the model's rate
 * (manifest.input.audio.sample_rate) by the runtime's FFT method, then its log-mel image by the manifest's audio
 * settings, scaled to the value range and normalised. Returns a Float32Array of one input (1 x n_mels x frames).
 */
export function prepareAudio(samples, sampleRate, manifest) {
  const described = manifest.input;
  if (described.modality !== "audio_features" || !described.audio) {
    throw new Error(`prepareAudio makes features of clips for audio models with audio settings; this model takes ${described.modality ?? "strokes"} inputs`);
  }
  if (!Number.isInteger(sampleRate) || sampleRate < 1) throw new Error(`sampleRate must be a positive integer (Hz), got ${sampleRate}`);
  if (!(samples instanceof Float32Array || samples instanceof Float64Array || samples instanceof Int16Array) || samples.length === 0) {
    throw new Error("samples must be a non-empty Float32Array (in [-1, 1]) or Int16Array of mono samples");
  }
  const floats = samples instanceof Int16Array ? Float32Array.from(samples, (v) => v / 32768) : Float32Array.from(samples);
  if (!floats.every(Number.isFinite)) throw new Error("samples contain NaN or infinite values");
  const features = logMel(resample(floats, sampleRate, described.audio.sample_rate), described.audio);
  const scale = scaling(described);
  return features.map((unit) => scale(unit, 0));
}
