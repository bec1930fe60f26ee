"""Which operators ExecuTorch's XNNPACK backend takes: its own configurations, plus ELU.

ExecuTorch 1.5 ships XNNPACK's ELU (operator visitor and partitioner configuration) but leaves the
configuration out of its default list, so a Conv4's ELU ran as a chain of five element-wise operators
(clamps, exp, subtraction, addition), each a pass over every activation. Delegated as one XNNPACK node, it
took a 20-way 5-shot head-only adaptation from 1.64-1.70x onnxruntime's time to 1.15-1.17x (docs/benchmarks.md).
Imported only when lowering (it needs the optional executorch package).
"""

from __future__ import annotations

import torch
from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
from executorch.backends.xnnpack.partition.config.generic_node_configs import EluConfig
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from torch.export import ExportedProgram


class PlainEluConfig(EluConfig):
    """ELU with any ``alpha`` but ``scale = input_scale = 1``: XNNPACK's ELU node has no other coefficients
    (SELU-like variants stay on portable kernels rather than run with the wrong ones)."""

    def check_constraints(self, node: torch.fx.Node, ep: ExportedProgram) -> bool:
        scale_and_input_scale = node.args[2:4]  # absent when they have their default, 1
        return all(c == 1 for c in scale_and_input_scale) and super().check_constraints(node, ep)


CONFIGS = [*ALL_PARTITIONER_CONFIGS, PlainEluConfig]


def xnnpack_partitioners(constant_convolutions: bool) -> list[XnnpackPartitioner]:
    """The partitioners a program is lowered with, in order.

    Matrix products with weights that are inputs need ``force_non_static_weights_for_f32_linear``. Convolutions
    with constant weights (the frozen layers of ``embed``, or a backbone that does not adapt) must go to the
    partitioner without that flag first: through the forcing one they lower, but the program then fails to load
    ("Failed to create convolution node ... xnn_status_invalid_parameter").
    """
    forcing = XnnpackPartitioner(configs=CONFIGS, force_non_static_weights_for_f32_linear=True)
    return [XnnpackPartitioner(configs=CONFIGS), forcing] if constant_convolutions else [forcing]
