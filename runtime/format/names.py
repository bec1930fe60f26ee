"""Names both sides of the export/runtime contract use: files, graph inputs and outputs, ExecuTorch methods."""

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"  # Ed25519 signature of the manifest's canonical bytes (optional)
ADAPT_ONNX = "adapt.onnx"
PREDICT_ONNX = "predict.onnx"
PTE = "model.pte"
SELFCHECK = "selfcheck.npz"
REQUIRED_FILES = (ADAPT_ONNX, PREDICT_ONNX, SELFCHECK)

ADAPT_INPUTS = ("support_x", "support_y", "example_mask", "class_mask")  # then the adapted parameters' values
PREDICT_INPUTS = ("x", "class_mask")  # then the adapted parameters, in the manifest's order
PREDICT_OUTPUTS = ("probabilities",)
PREDICT_METHOD = "predict"


def adapt_method(support_size: int) -> str:
    """The ExecuTorch method that adapts to exactly ``support_size`` (padded) examples."""
    return f"adapt_{support_size}"
