"""The self-check task an artifact carries (selfcheck.npz): full-size for small inputs, smaller for large ones (a
224x224 photo model would otherwise carry 120 MB of reference inputs), and read only as a task the artifact serves."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edgeadapt.export.artifact import SELFCHECK_BYTES, selfcheck_task
from edgeadapt.export.onnx_graphs import GraphSpec
from edgeadapt.runtime.errors import ArtifactError
from edgeadapt.runtime.selfcheck import read_selfcheck

MANIFEST = {"input_shape": [3, 8, 8], "max_ways": 4, "max_shots": 3}


def _npz(support_y, queries=2, columns=None, support=None) -> bytes:
    support_y = np.asarray(support_y, np.int64)
    classes = columns if columns is not None else int(support_y.max()) + 1
    buffer = io.BytesIO()
    np.savez(buffer, support_x=np.zeros((len(support_y) if support is None else support, 3, 8, 8), np.float32),
             support_y=support_y, query_x=np.zeros((queries, 3, 8, 8), np.float32),
             probabilities=np.full((queries, classes), 1.0 / classes, np.float32))
    return buffer.getvalue()


def test_small_inputs_keep_the_full_size_task_and_photos_a_smaller_one_within_the_budget():
    assert selfcheck_task(GraphSpec((1, 28, 28), 20, 10), 8) == (20, 10)
    ways, shots = selfcheck_task(GraphSpec((3, 224, 224), 20, 10), 8)
    assert ways >= 2 and shots >= 1 and (ways, shots) != (20, 10)
    assert (ways * shots + 8) * 4 * 3 * 224 * 224 <= SELFCHECK_BYTES


def test_a_task_smaller_than_the_artifact_serves_is_read():
    arrays = read_selfcheck(_npz([0, 0, 1, 1, 2]), MANIFEST, "selfcheck.npz")
    assert arrays["support_x"].shape == (5, 3, 8, 8) and arrays["probabilities"].shape == (2, 3)


@pytest.mark.parametrize("support_y, kwargs, message", [
    ([0, 0, 2, 2], {}, "labelled 0..k-1"),                    # a class missing between labels
    ([0, 0, 0, 0, 1], {}, "1..3 examples"),                   # more shots than the artifact takes
    ([0, 1, 2, 3, 4], {}, "2..4 classes"),                    # more ways than it takes
    ([0, 0, 0], {}, "2..4 classes"),                          # one class
    ([0, 1], {"columns": 3}, "probabilities of shape"),       # a column per class seen, no more
    ([0, 1], {"support": 3}, "support set"),                  # inputs and labels of other lengths
])
def test_a_task_the_artifact_does_not_serve_is_refused(support_y, kwargs, message):
    with pytest.raises(ArtifactError, match=message):
        read_selfcheck(_npz(support_y, **kwargs), MANIFEST, "selfcheck.npz")
