"""How the ExecuTorch program's int8 ``embed`` method is quantised: ExecuTorch's ``XNNPACKQuantizer`` with the two
choices onnxruntime's QDQ form makes (:mod:`~edgeadapt.export.quantize`), so both engines lose as little.

- Activation ranges are the minimum and maximum observed on the calibration sample (:func:`min_max_activations`),
  not the quantiser's default histogram observer, which clips ranges to minimise the squared error: through the
  runtime on the Omniglot twin's validation alphabets, 20-way 1-shot accuracy fell 0.65 points below float with the
  histogram and 0.41 with min-max (``benchmarks/int8_engines.py``).
- A convolution followed by a clamp (ReLU6: ``hardtanh(0, 6)``, as in MobileNets) is quantised as one operator, its
  output range the clamp's (:func:`annotate_clamped_convolutions`). ``XNNPACKQuantizer`` fuses only ReLU so; a
  clamp shares its input's range, so the convolution's output was quantised over its unclamped range (from -8..10
  to -57..22 in the Caltech-101 MobileNet's layers) and the clamped values kept 18-90 of the 256 levels. onnxruntime's
  quantiser drops a clamp into the convolution's range the same way, and XNNPACK runs the pair as one quantised
  convolution with output bounds either way.

Imported only when lowering (it needs the optional executorch package).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (QuantizationConfig, get_bias_qspec,
                                                                           get_input_act_qspec, get_output_act_qspec,
                                                                           get_weight_qspec)
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e import MinMaxObserver
from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

CONVOLUTIONS = {torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default}
CLAMPS = {torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default}


def min_max_activations() -> QuantizationConfig:
    """``XNNPACKQuantizer``'s per-channel configuration (int8 weights per output channel, symmetric; int8
    activations) with activation ranges set by their observed minimum and maximum."""
    config = get_symmetric_quantization_config(is_per_channel=True)
    activations = replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return replace(config, input_activation=activations, output_activation=activations)


class EmbedQuantizer(XNNPACKQuantizer):
    """``XNNPACKQuantizer`` set to :func:`min_max_activations` that also quantises convolution + clamp as one
    operator (:func:`annotate_clamped_convolutions`) before its own patterns annotate the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.set_global(min_max_activations())

    def annotate(self, model: GraphModule) -> GraphModule:
        annotate_clamped_convolutions(model, self.global_config)
        return super().annotate(model)


def annotate_clamped_convolutions(model: GraphModule, config: QuantizationConfig) -> int:
    """Annotate each convolution whose only user is a clamp as ``XNNPACKQuantizer`` annotates convolution + ReLU:
    the convolution's input and weights quantised, its output not, the clamp's output quantised over the clamped
    range. Returns how many pairs it annotated."""
    pairs = 0
    for clamp in model.graph.nodes:
        convolution = clamp.args[0] if clamp.op == "call_function" and clamp.target in CLAMPS else None
        if not (isinstance(convolution, Node) and convolution.target in CONVOLUTIONS and len(convolution.users) == 1):
            continue
        source, weight, *rest = convolution.args
        bias = rest[0] if rest and isinstance(rest[0], Node) else None
        if any(_annotated(n) for n in (clamp, convolution, weight, bias) if n is not None):
            continue
        inputs = {source: get_input_act_qspec(config), weight: get_weight_qspec(config)}
        if bias is not None:
            inputs[bias] = get_bias_qspec(config)
            bias.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
        weight.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
        convolution.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
        clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config),
                                                              _annotated=True)
        pairs += 1
    return pairs


def _annotated(node: Node) -> bool:
    annotation = node.meta.get(Q_ANNOTATION_KEY)
    return annotation is not None and annotation._annotated
