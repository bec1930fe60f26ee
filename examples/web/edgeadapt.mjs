// An edgeadapt artifact in any ONNX Runtime JavaScript engine (onnxruntime-web in a page, onnxruntime-node on a
// server or an ARM board): reads the manifest, checks the graphs' sha256, adapts and predicts. The same rules as
// edgeadapt.runtime: classes are ordered as Python's sorted() orders the labels, the first k class_mask entries are 1.
// Inputs go through embed.onnx (the frozen layers, when the artifact has them) and its features to adapt and predict.

const FORMAT_VERSION = 4;
const NEEDED_KEYS = ["input_shape", "feature_shape", "max_ways", "max_shots", "adapt_inputs", "adapted_parameters",
  "files"];
const GRAPHS = ["adapt.onnx", "predict.onnx"];
const EMBED = "embed.onnx";

/** Raised for bad input or an unreadable artifact, with a message that names what is wrong. */
export class EdgeAdaptError extends Error {}

/** Python's sorted() for labels of one kind (numbers, or strings by code point); else first-seen order, as the runtime. */
export function orderClasses(labels) {
  const seen = [...new Set(labels)];
  const kinds = new Set(seen.map((label) => typeof label));
  if (kinds.size !== 1) return seen;
  if (kinds.has("number")) return seen.sort((a, b) => a - b);
  if (kinds.has("string")) return seen.sort(compareCodePoints);
  return seen;
}

function compareCodePoints(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

async function sha256Hex(bytes) {
  // Web Crypto: a global in browsers and Node.js >= 19; Node.js 18 has it in node:crypto only
  const subtle = globalThis.crypto?.subtle ?? (await import("node:crypto")).webcrypto.subtle;
  const digest = new Uint8Array(await subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function checkManifest(manifest) {
  if (manifest.format_version !== FORMAT_VERSION) {
    throw new EdgeAdaptError(`manifest.json has format_version ${manifest.format_version}; this runner reads ${FORMAT_VERSION} (re-export the model)`);
  }
  const missing = NEEDED_KEYS.filter((key) => !(key in manifest));
  if (missing.length) throw new EdgeAdaptError(`manifest.json lacks the keys ${missing.join(", ")}`);
  for (const name of GRAPHS) {
    if (!manifest.files[name]) throw new EdgeAdaptError(`manifest.json does not list ${name}`);
  }
  if (manifest.adapt_inputs.length !== 4) {
    throw new EdgeAdaptError(`expected 4 adapt inputs, the manifest lists ${manifest.adapt_inputs.join(", ")}`);
  }
}

function allFinite(values) {
  for (const v of values) if (!Number.isFinite(v)) return false;
  return true;
}

/** A loaded artifact: every adapt() starts from the meta-learned weights stored in adapt.onnx. */
export class Learner {
  constructor(ort, manifest, adaptSession, predictSession, embedSession) {
    this.ort = ort;
    this.manifest = manifest;
    this.inputShape = manifest.input_shape.map(Number);
    this.inputSize = this.inputShape.reduce((a, b) => a * b, 1);
    this.maxWays = Number(manifest.max_ways);
    this.maxShots = Number(manifest.max_shots);
    this.parameters = manifest.adapted_parameters.map((p) => p.name);
    this._adapt = adaptSession;
    this._predict = predictSession;
    this._embed = embedSession;  // undefined when every layer adapts: the inputs are the features
  }

  /**
   * Load an artifact: `read(name)` resolves to a file's bytes (Uint8Array); `sessionOptions` go to
   * ort.InferenceSession.create (e.g. executionProviders, intraOpNumThreads).
   */
  static async load(ort, read, sessionOptions = {}) {
    let manifest;
    try {
      manifest = JSON.parse(new TextDecoder().decode(await read("manifest.json")));
    } catch (e) {
      throw new EdgeAdaptError(`manifest.json is not readable JSON: ${e.message}`);
    }
    checkManifest(manifest);
    const graphs = manifest.files[EMBED] ? [...GRAPHS, EMBED] : GRAPHS;
    const sessions = await Promise.all(graphs.map(async (name) => {
      let bytes;
      try {
        bytes = await read(name);
      } catch (e) {
        throw new EdgeAdaptError(`${name}, which the manifest lists, cannot be read: ${e.message}`);
      }
      if ((await sha256Hex(bytes)) !== manifest.files[name]) {
        throw new EdgeAdaptError(`${name} does not match its sha256 in the manifest: corrupt or modified`);
      }
      return ort.InferenceSession.create(bytes, sessionOptions);
    }));
    const outputs = sessions[0].outputNames;
    const expected = manifest.adapted_parameters.map((p) => p.name);
    if (outputs.join("\n") !== expected.join("\n")) {
      throw new EdgeAdaptError(`adapt.onnx outputs ${outputs.join(", ")}; the manifest lists ${expected.join(", ")}`);
    }
    return new Learner(ort, manifest, ...sessions);
  }

  _images(x, name) {
    if (!(x instanceof Float32Array)) throw new EdgeAdaptError(`${name} must be a Float32Array`);
    if (x.length === 0 || x.length % this.inputSize !== 0) {
      throw new EdgeAdaptError(`${name} holds ${x.length} values, not a whole number of ${this.inputShape.join("x")} inputs`);
    }
    if (!allFinite(x)) throw new EdgeAdaptError(`${name} contains NaN or infinite values`);
    return new this.ort.Tensor("float32", x, [x.length / this.inputSize, ...this.inputShape]);
  }

  /** The features of checked inputs (a tensor): embed.onnx's output, or the inputs where there is no embed. */
  async _features(x) {
    if (!this._embed) return x;
    const outputs = await this._embed.run({ [this._embed.inputNames[0]]: x });
    return outputs[this._embed.outputNames[0]];
  }

  _classMask(ways) {
    const mask = new Float32Array(this.maxWays);
    mask.fill(1, 0, ways);
    return new this.ort.Tensor("float32", mask, [this.maxWays]);
  }

  /** Adapt to `supportX` (n inputs, flattened, float32) labelled by `labels` (n labels); resolves to an AdaptedLearner. */
  async adapt(supportX, labels) {
    const x = this._images(supportX, "support_x");
    const n = x.dims[0];
    if (labels.length !== n) throw new EdgeAdaptError(`support_x has ${n} examples but there are ${labels.length} labels`);
    const classes = orderClasses(labels);
    if (classes.length < 2) throw new EdgeAdaptError(`adaptation needs at least 2 classes, got ${classes.length}`);
    if (classes.length > this.maxWays) {
      throw new EdgeAdaptError(`${classes.length} classes exceed this artifact's max_ways=${this.maxWays}`);
    }
    for (const c of classes) {
      const shots = labels.filter((label) => label === c).length;
      if (shots > this.maxShots) {
        throw new EdgeAdaptError(`class ${JSON.stringify(c)} has ${shots} examples; this artifact takes at most max_shots=${this.maxShots}`);
      }
    }
    const y = BigInt64Array.from(labels, (label) => BigInt(classes.indexOf(label)));
    const [xName, yName, weightName, maskName] = this.manifest.adapt_inputs;
    const outputs = await this._adapt.run({
      [xName]: await this._features(x),
      [yName]: new this.ort.Tensor("int64", y, [n]),
      [weightName]: new this.ort.Tensor("float32", new Float32Array(n).fill(1), [n]),
      [maskName]: this._classMask(classes.length),
    });
    const params = {};
    for (const name of this.parameters) {
      if (!allFinite(outputs[name].data)) throw new EdgeAdaptError("adaptation diverged: the adapted parameters are not finite");
      params[name] = outputs[name];
    }
    return new AdaptedLearner(this, classes, params);
  }
}

/** A personalised classifier: predictProba() gives one row of probabilities per input, ordered as `classes`. */
export class AdaptedLearner {
  constructor(learner, classes, params) {
    this.learner = learner;
    this.classes = classes;
    this.params = params;
  }

  /** Probabilities (m rows of k numbers) for `x` (m inputs, flattened, float32). */
  async predictProba(x) {
    const images = this.learner._images(x, "x");
    const [featuresName, maskName] = this.learner._predict.inputNames;
    const outputs = await this.learner._predict.run({
      [featuresName]: await this.learner._features(images),
      [maskName]: this.learner._classMask(this.classes.length), ...this.params,
    });
    const probabilities = outputs[this.learner._predict.outputNames[0]];
    const width = probabilities.dims[1];
    const rows = [];
    for (let i = 0; i < images.dims[0]; i++) {
      rows.push(Array.from(probabilities.data.subarray(i * width, i * width + this.classes.length)));
    }
    return rows;
  }

  /** The most probable label for each input. */
  async predict(x) {
    return (await this.predictProba(x)).map((row) => this.classes[row.indexOf(Math.max(...row))]);
  }
}
