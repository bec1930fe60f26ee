"""edgeadapt.sdk.importers: weights of models trained elsewhere, read into the SDK's networks.

- ``tflite``: a TFLite MobileNet V1 (such as the int8/uint8 ImageNet embedding extractor Coral's imprinting uses)
  dequantised into the backbone ``mobilenet_v1_imagenet`` (:func:`import_tflite`, :func:`read_tflite`), and the
  result written as a ``.safetensors`` state dict (:func:`save_imported`) that ``edgeadapt pretrain --weights``
  starts from. Reading needs the optional ``tflite`` package (``pip install 'edgeadapt[import]'``).
"""

from .tflite import BACKBONE, TFLiteImport, import_tflite, read_tflite, save_imported

__all__ = ["BACKBONE", "TFLiteImport", "import_tflite", "read_tflite", "save_imported"]
