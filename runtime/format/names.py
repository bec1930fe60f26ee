"""Names both sides of the export/runtime contract use: files, graph inputs and outputs, ExecuTorch methods.

An artifact's programs: ``embed`` (optional) maps inputs to features through the layers that never adapt; ``adapt``
and ``predict`` take those features (the inputs themselves where there is no ``embed``). The frozen layers' weights
are thus stored once, in ``embed``.
"""

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"  # Ed25519 signature of the manifest's canonical bytes (optional)
EMBED_ONNX = "embed.onnx"  # present when the scope leaves layers frozen
ADAPT_ONNX = "adapt.onnx"
PREDICT_ONNX = "predict.onnx"
PTE = "model.pte"
SELFCHECK = "selfcheck.npz"
EXECUTORCH_PROBABILITIES = "executorch_probabilities"  # the self-check's reference for model.pte, where it differs
REQUIRED_FILES = (ADAPT_ONNX, PREDICT_ONNX, SELFCHECK)

EMBED_INPUTS = ("x",)
EMBED_OUTPUTS = ("features",)
ADAPT_INPUTS = ("support_features", "support_y", "example_mask", "class_mask")  # adapt's outputs: the adapted
# parameters, in the manifest's order
PREDICT_INPUTS = ("features", "class_mask")  # then the adapted parameters, in the manifest's order
PREDICT_OUTPUTS = ("probabilities",)
PREDICT_METHOD = "predict"
EMBED_METHOD = "embed"


def adapt_method(support_size: int) -> str:
    """The ExecuTorch method that adapts to exactly ``support_size`` (padded) examples."""
    return f"adapt_{support_size}"
