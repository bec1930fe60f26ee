// Copy onnxruntime-web's wasm build (the ES module and its .wasm/.mjs loader) from node_modules into vendor/ort,
// the folder the page imports it from: the page never fetches code from outside the served folder.
import { copyFileSync, mkdirSync } from "node:fs";

const FILES = ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"];
mkdirSync("vendor/ort", { recursive: true });
for (const name of FILES) copyFileSync(`node_modules/onnxruntime-web/dist/${name}`, `vendor/ort/${name}`);
console.log(`copied ${FILES.join(", ")} to vendor/ort/`);
