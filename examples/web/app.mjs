// The demo page: a drawing pad (drawing models) or a camera / photo input (image models: prepareInput on the
// canvas's RGBA pixels, by the manifest's input description), class cards holding a few examples each, adaptation
// and classification in onnxruntime-web (wasm). window.demo exposes the state the browser test reads
// (tests/test_web_demo.py).
import * as ort from "./vendor/ort/ort.wasm.min.mjs";
import { Learner } from "./edgeadapt.mjs";
import { IMAGE_SIZE, centreBox, prepareInput, preprocessDrawing } from "./preprocess.mjs";

const MIN_CLASSES = 2;
const MAX_CLASSES = 5;
const MAX_PHOTO_SIDE = 1600; // larger photos are drawn smaller on the canvas (the browser's scaling) before Lanczos
const $ = (id) => document.getElementById(id);
const pad = $("pad");
const context = pad.getContext("2d", { willReadFrequently: true });
const photo = $("photo");
const photoContext = photo.getContext("2d", { willReadFrequently: true });
const state = { learner: null, adapted: null, classes: [], samples: null, hasPhoto: false };
const demo = { state, lastInput: null, lastAdaptation: null, lastResult: null, error: null };
window.demo = demo;
demo.padGray = () => padGray();
demo.photoInput = () => photoInput();
demo.photoPixels = () => Array.from(photoContext.getImageData(0, 0, photo.width, photo.height).data);

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// --- the drawing pad: black ink on white, strokes about as wide as Omniglot's at 105x105 ---
function clearPad() {
  context.fillStyle = "#fff";
  context.fillRect(0, 0, pad.width, pad.height);
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

let last = null;
pad.addEventListener("pointerdown", (event) => {
  pad.setPointerCapture(event.pointerId);
  last = padPoint(event);
});
pad.addEventListener("pointermove", (event) => {
  if (!last) return;
  const point = padPoint(event);
  context.strokeStyle = "#000";
  context.lineWidth = 3;
  context.lineCap = "round";
  context.beginPath();
  context.moveTo(...last);
  context.lineTo(...point);
  context.stroke();
  last = point;
});
for (const name of ["pointerup", "pointercancel"]) pad.addEventListener(name, () => { last = null; });

/** The pad as preprocess_omniglot's input: 8-bit gray (the red channel of an opaque black-on-white canvas). */
function padGray() {
  const rgba = context.getImageData(0, 0, pad.width, pad.height).data;
  const gray = new Uint8Array(pad.width * pad.height);
  for (let i = 0; i < gray.length; i++) gray[i] = rgba[4 * i];
  return gray;
}

function showGray(canvas, gray) {
  const image = canvas.getContext("2d").createImageData(canvas.width, canvas.height);
  gray.forEach((value, i) => image.data.set([value, value, value, 255], 4 * i));
  canvas.getContext("2d").putImageData(image, 0, 0);
}

/** A thumbnail of what the model sees: the 28x28 input, ink dark. */
function thumbnail(input) {
  const canvas = Object.assign(document.createElement("canvas"), { width: IMAGE_SIZE, height: IMAGE_SIZE, className: "thumb" });
  showGray(canvas, Uint8Array.from(input, (ink) => Math.round(255 * (1 - ink))));
  return canvas;
}

function padInput() {
  const input = preprocessDrawing(padGray(), pad.width, pad.height);
  demo.lastInput = Array.from(input);
  return input;
}

// --- photos (image models): a file or the camera drawn on a canvas, its RGBA pixels prepared by the manifest ---
const takesPhotos = () => state.learner?.manifest.input?.modality === "image";

/** Draws an image, bitmap or video frame on the photo canvas at its own size (at most MAX_PHOTO_SIDE a side). */
function showPhoto(source, width, height) {
  const shrink = Math.min(1, MAX_PHOTO_SIDE / Math.max(width, height));
  photo.width = Math.max(1, Math.round(width * shrink));
  photo.height = Math.max(1, Math.round(height * shrink));
  photoContext.drawImage(source, 0, 0, photo.width, photo.height);
  state.hasPhoto = true;
}

/** The photo as the model's input: getImageData (RGBA) -> prepareInput, as the runtime prepares a camera frame. */
function photoInput() {
  if (!state.hasPhoto) throw new Error("Take or choose a photo first.");
  const { data } = photoContext.getImageData(0, 0, photo.width, photo.height);
  const input = prepareInput(data, photo.width, photo.height, 4, state.learner.manifest, { channelOrder: "rgb" });
  demo.lastInput = Array.from(input);
  return input;
}

/** A thumbnail of the part of the photo the model sees (the centre box when it crops), at the input's size. */
function photoThumbnail() {
  const [, height, width] = state.learner.manifest.input_shape;
  const box = state.learner.manifest.input.fit === "crop" ? centreBox(photo.height, photo.width, height, width)
    : [0, 0, photo.height, photo.width];
  const canvas = Object.assign(document.createElement("canvas"), { width, height, className: "thumb" });
  canvas.getContext("2d").drawImage(photo, box[1], box[0], box[3], box[2], 0, 0, width, height);
  return canvas;
}

async function openPhoto(file) {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" }); // EXIF orientation, as training's exif_transpose
  showPhoto(bitmap, bitmap.width, bitmap.height);
  bitmap.close();
}

async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) throw new Error("this browser gives no camera here (it needs https or localhost)");
  const video = $("camera");
  video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  video.hidden = false;
  await video.play();
  $("camera-shoot").disabled = false;
}

function shoot() {
  const video = $("camera");
  if (video.videoWidth) showPhoto(video, video.videoWidth, video.videoHeight);
}

function setUpPhotos() {
  $("photo-file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) openPhoto(file).catch((e) => setStatus(`Could not open the photo: ${e.message}`, true));
  });
  $("camera-start").addEventListener("click", () => startCamera().catch((e) => setStatus(`No camera: ${e.message}`, true)));
  $("camera-shoot").addEventListener("click", shoot);
}

/** Shows the drawing pad or the photo input, whichever the model takes. */
function showInputs() {
  const photos = takesPhotos();
  $("drawing-input").hidden = photos;
  $("photo-input").hidden = !photos;
  $("sample-task").disabled = photos;
  $("classify-what").textContent = photos ? "3. Classify the photo" : "3. Classify the drawing on the pad";
}

/** The current input (photo or pad) as the model's input, and its thumbnail. */
function currentExample() {
  if (takesPhotos()) return { input: photoInput(), thumb: photoThumbnail() };
  const input = padInput();
  clearPad();
  return { input, thumb: null };
}

// --- bundled sample drawings: raw 105x105 ink bits, pre-processed exactly like the pad ---
function sampleGray(bits, [height, width]) {
  const bytes = Uint8Array.from(atob(bits), (c) => c.charCodeAt(0));
  const gray = new Uint8Array(height * width);
  for (let i = 0; i < gray.length; i++) gray[i] = (bytes[i >> 3] >> (7 - (i & 7))) & 1 ? 0 : 255;
  return gray;
}

function putSample(character, drawing) {
  const sample = state.samples.characters[character];
  showGray(pad, sampleGray(sample.ink[drawing], sample.shape));
}

function renderSamples() {
  const holder = $("samples");
  state.samples.characters.forEach((sample, c) => {
    const row = Object.assign(document.createElement("div"), { className: "samples-row", title: sample.name });
    sample.ink.forEach((bits, d) => {
      const canvas = Object.assign(document.createElement("canvas"), { width: sample.shape[1], height: sample.shape[0], className: "thumb" });
      canvas.dataset.character = c;
      canvas.dataset.drawing = d;
      showGray(canvas, sampleGray(bits, sample.shape));
      canvas.addEventListener("click", () => putSample(c, d));
      row.append(canvas);
    });
    holder.append(row);
  });
}

// --- class cards ---
function invalidate() {
  state.adapted = null;
  $("classify").disabled = true;
  const ready = state.learner && state.classes.filter((c) => c.examples.length).length >= MIN_CLASSES;
  $("adapt").disabled = !ready;
}

function renderClasses() {
  const holder = $("classes");
  holder.replaceChildren();
  state.classes.forEach((entry, i) => {
    const card = Object.assign(document.createElement("div"), { className: "card" });
    const name = Object.assign(document.createElement("input"), { value: entry.name, className: "class-name" });
    name.addEventListener("change", () => { entry.name = name.value; invalidate(); });
    const label = takesPhotos() ? "Add the photo" : "Add the pad's drawing";
    const add = Object.assign(document.createElement("button"), { textContent: label, className: "add-example" });
    add.addEventListener("click", () => {
      if (entry.examples.length >= state.learner.maxShots) {
        setStatus(`This model takes at most ${state.learner.maxShots} examples per class.`, true);
        return;
      }
      try {
        const { input, thumb } = currentExample();
        entry.examples.push(input);
        entry.thumbs = [...(entry.thumbs ?? []), thumb];
      } catch (e) {
        setStatus(e.message, true);
      }
      renderClasses();
    });
    const reset = Object.assign(document.createElement("button"), { textContent: "Remove examples" });
    reset.addEventListener("click", () => { entry.examples = []; entry.thumbs = []; renderClasses(); });
    const examples = Object.assign(document.createElement("div"), { className: "examples" });
    examples.append(...entry.examples.map((input, j) => entry.thumbs?.[j] ?? thumbnail(input)));
    card.append(name, " ", add, reset, examples);
    card.dataset.index = i;
    holder.append(card);
  });
  $("add-class").disabled = state.classes.length >= Math.min(MAX_CLASSES, state.learner?.maxWays ?? MAX_CLASSES);
  invalidate();
}

function addClass() {
  state.classes.push({ name: `Class ${state.classes.length + 1}`, examples: [] });
  renderClasses();
}

function fillWithSamples(ways = 3, shots = 2) {
  state.classes = state.samples.characters.slice(0, ways).map((sample, c) => ({
    name: `Class ${c + 1}`,
    examples: sample.ink.slice(0, shots).map((bits) => preprocessDrawing(sampleGray(bits, sample.shape), sample.shape[1], sample.shape[0])),
  }));
  renderClasses();
}

// --- adapt and classify ---
function concat(inputs) {
  const out = new Float32Array(inputs.length * inputs[0].length);
  inputs.forEach((input, i) => out.set(input, i * input.length));
  return out;
}

async function adapt() {
  const used = state.classes.filter((c) => c.examples.length);
  const names = used.map((c) => c.name);
  if (new Set(names).size !== names.length) return setStatus("Two classes have the same name: rename one.", true);
  const inputs = used.flatMap((c) => c.examples);
  const labels = used.flatMap((c) => c.examples.map(() => c.name));
  $("adapt").disabled = true;
  try {
    const start = performance.now();
    state.adapted = await state.learner.adapt(concat(inputs), labels);
    const ms = performance.now() - start;
    demo.lastAdaptation = { classes: state.adapted.classes, ms, examples: inputs.length };
    $("timing").textContent = `Adapted to ${used.length} classes, ${inputs.length} examples in ${ms.toFixed(0)} ms ` +
      `(${state.learner.manifest.inner_steps} gradient steps, wasm, ${ort.env.wasm.numThreads} thread(s)).`;
    $("classify").disabled = false;
  } catch (e) {
    setStatus(`Adaptation failed: ${e.message}`, true);
  } finally {
    $("adapt").disabled = false;
  }
}

async function classify() {
  let input;
  try {
    input = takesPhotos() ? photoInput() : padInput();
  } catch (e) {
    return setStatus(e.message, true);
  }
  const start = performance.now();
  const [row] = await state.adapted.predictProba(input);
  const ms = performance.now() - start;
  demo.lastResult = { classes: state.adapted.classes, probabilities: row, ms };
  const best = row.indexOf(Math.max(...row));
  $("result").replaceChildren(...state.adapted.classes.map((name, i) => {
    const bar = Object.assign(document.createElement("div"), { className: i === best ? "bar best" : "bar" });
    const fill = Object.assign(document.createElement("div"), { className: "fill" });
    fill.style.width = `${(100 * row[i]).toFixed(1)}%`;
    const track = document.createElement("div");
    track.append(fill);
    bar.append(Object.assign(document.createElement("span"), { textContent: name }), track,
      Object.assign(document.createElement("span"), { textContent: `${(100 * row[i]).toFixed(1)}%` }));
    return bar;
  }), Object.assign(document.createElement("p"), { textContent: `Classified in ${ms.toFixed(0)} ms.` }));
}

async function read(name) {
  const response = await fetch(`model/${name}`);
  if (!response.ok) throw new Error(`model/${name}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function start() {
  ort.env.wasm.wasmPaths = new URL("./vendor/ort/", import.meta.url).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  clearPad();
  $("clear").addEventListener("click", clearPad);
  $("add-class").addEventListener("click", addClass);
  $("sample-task").addEventListener("click", () => fillWithSamples());
  $("adapt").addEventListener("click", adapt);
  $("classify").addEventListener("click", classify);
  setUpPhotos();
  const [samples, learner] = await Promise.all([
    fetch("samples.json").then((r) => r.json()),
    Learner.load(ort, read, { executionProviders: ["wasm"] }),
  ]);
  state.samples = samples;
  state.learner = learner;
  showInputs();
  renderSamples();
  for (let i = 0; i < MIN_CLASSES; i++) addClass();
  const model = learner.manifest.model?.name ?? "model";
  setStatus(`${model} loaded in onnxruntime-web ${ort.env.versions?.web ?? ""} (wasm): up to ` +
    `${Math.min(MAX_CLASSES, learner.maxWays)} classes here, ${learner.maxShots} examples per class.`);
}

demo.ready = start().catch((e) => {
  demo.error = e.message;
  setStatus(`Could not start: ${e.message}`, true);
  throw e;
});
