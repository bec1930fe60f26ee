#!/usr/bin/env node
// Adapt an edgeadapt artifact to a support set and predict a query set with onnxruntime-node (ONNX Runtime's
// native CPU kernels), from the command line:
//
//   node run.mjs ARTIFACT --support-x support_x.npy --support-y support_y.json --query-x query_x.npy [--out result.json]
//                [--threads N] [--repeats R]
//
// Inputs are float32 .npy files (n, *input_shape) or JSON nested arrays; labels a JSON array (or an int64 .npy).
// Prints (or writes to --out) JSON: {classes, probabilities, adapt_ms, predict_ms, engine, arch}: the times of the
// first adapt and predict calls, or with --repeats R the median of R more calls after them (for benchmarks).
import { readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { parse as parseNpy } from "npyjs";
import * as ort from "onnxruntime-node";
import { EdgeAdaptError, Learner } from "../web/edgeadapt.mjs";

const USAGE = "usage: node run.mjs ARTIFACT --support-x FILE --support-y FILE --query-x FILE [--out FILE] [--threads N] "
  + "[--repeats R]";

async function readArray(file) {
  const bytes = await readFile(file);
  if (file.endsWith(".npy")) {
    const array = parseNpy(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    if (array.fortranOrder) throw new EdgeAdaptError(`${file}: Fortran-ordered arrays are not supported`);
    return array.data;
  }
  return JSON.parse(bytes.toString("utf8"));
}

async function images(file) {
  const data = await readArray(file);
  if (data instanceof Float32Array) return data;
  if (Array.isArray(data)) return Float32Array.from(data.flat(Infinity));
  throw new EdgeAdaptError(`${file} must hold float32 values`);
}

async function labels(file) {
  const data = await readArray(file);
  if (data instanceof BigInt64Array) return Array.from(data, Number);
  if (Array.isArray(data)) return data;
  throw new EdgeAdaptError(`${file} must hold a JSON array of labels or int64 values`);
}

async function timedRound(learner, supportX, supportY, queryX) {
  let start = performance.now();
  const adapted = await learner.adapt(supportX, supportY);
  const adaptMs = performance.now() - start;
  start = performance.now();
  const probabilities = await adapted.predictProba(queryX);
  return [adapted, probabilities, adaptMs, performance.now() - start];
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      "support-x": { type: "string" }, "support-y": { type: "string" }, "query-x": { type: "string" },
      out: { type: "string" }, threads: { type: "string", default: "1" }, repeats: { type: "string", default: "0" },
    },
  });
  if (positionals.length !== 1 || !values["support-x"] || !values["support-y"] || !values["query-x"]) {
    throw new EdgeAdaptError(USAGE);
  }
  const folder = positionals[0];
  const threads = Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1) throw new EdgeAdaptError(`--threads must be a positive integer, got ${values.threads}`);
  const repeats = Number(values.repeats);
  if (!Number.isInteger(repeats) || repeats < 0) throw new EdgeAdaptError(`--repeats must be a whole number, got ${values.repeats}`);
  const learner = await Learner.load(ort, (name) => readFile(path.join(folder, name)).then((b) => new Uint8Array(b)),
    { executionProviders: ["cpu"], intraOpNumThreads: threads, interOpNumThreads: 1 });
  const [supportX, supportY, queryX] = await Promise.all(
    [images(values["support-x"]), labels(values["support-y"]), images(values["query-x"])]);
  let [adapted, probabilities, adaptMs, predictMs] = await timedRound(learner, supportX, supportY, queryX);
  if (repeats > 0) {
    const rounds = [];
    for (let i = 0; i < repeats; i += 1) rounds.push(await timedRound(learner, supportX, supportY, queryX));
    adaptMs = median(rounds.map((r) => r[2]));
    predictMs = median(rounds.map((r) => r[3]));
  }
  const result = JSON.stringify({
    classes: adapted.classes, probabilities, adapt_ms: adaptMs, predict_ms: predictMs,
    engine: `onnxruntime-node ${ort.env.versions.node ?? ""}`.trim(), arch: process.arch,
  });
  if (values.out) {
    await writeFile(`${values.out}.tmp`, result);
    await rename(`${values.out}.tmp`, values.out);
  } else {
    console.log(result);
  }
}

main().catch((e) => {
  console.error(e instanceof EdgeAdaptError ? `error: ${e.message}` : e);
  process.exit(e instanceof EdgeAdaptError ? 2 : 1);
});
