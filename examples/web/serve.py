"""Serve the web demo locally: this folder at /, an artifact's files at /model/, with the cross-origin isolation
headers (COOP/COEP) that let onnxruntime-web run its multi-threaded wasm.

    python examples/web/serve.py [--artifact models/omniglot-conv4] [--port 8000]

Standard library only. Build the page's vendor/ folder first: ``npm ci && npm run build`` in examples/web.
"""

from __future__ import annotations

import argparse
import functools
import logging
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRETRAINED = HERE.parent.parent / "models" / "omniglot-conv4"
ARTIFACT_FILES = ("manifest.json", "embed.onnx", "adapt.onnx", "predict.onnx")


class DemoHandler(SimpleHTTPRequestHandler):
    """Static files with COOP/COEP headers; /model/<file> maps to the artifact's graphs and manifest."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".wasm": "application/wasm"}

    def __init__(self, *args, artifact: Path, **kwargs):
        self.artifact = artifact
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0].split("#", 1)[0]
        if name.startswith("/model/"):
            file = name[len("/model/"):]
            return str(self.artifact / file) if file in ARTIFACT_FILES else str(self.artifact / "missing")
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        logging.getLogger("edgeadapt.web").debug(format, *args)


def make_server(artifact: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server for the demo (port 0 picks a free one: read ``server.server_address``)."""
    if not (artifact / "manifest.json").is_file():
        raise SystemExit(f"no artifact at {artifact} (expected {artifact / 'manifest.json'})")
    if not (HERE / "vendor" / "ort").is_dir():
        raise SystemExit(f"{HERE / 'vendor' / 'ort'} is missing: run `npm ci && npm run build` in {HERE}")
    handler = functools.partial(DemoHandler, directory=str(HERE), artifact=artifact.resolve())
    return ThreadingHTTPServer((host, port), handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=PRETRAINED, help="artifact folder (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = make_server(args.artifact, args.host, args.port)
    print(f"edgeadapt web demo: http://{args.host}:{server.server_address[1]}/ (artifact {args.artifact}); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
