"""Procedural character-like glyphs: an embedded few-shot dataset with unlimited classes that needs no files.

Class ``c`` is 2-4 pen strokes (lines and quadratic/cubic Bezier curves) drawn from a generator seeded by
``(seed, c)``, so it is the same whatever ``n_classes`` or ``first_class`` is; each drawing jitters the control
points, applies a small random affine transform and varies the pen width, like different people writing it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from edgeadapt.runtime.format.inputs import InputSpec

from ..errors import ConfigError
from .base import STROKES, ClassDataset

CLASSES_PER_ALPHABET = 20
_SEGMENTS_PER_CURVE = 8
_JITTER = 0.045  # control-point noise per drawing, in units of the glyph box
_REFERENCE_SIZE = 28.0  # pen widths and shifts below are in pixels at this image size


def make_glyphs(
    n_classes: int, n_drawings: int = 20, seed: int = 0, image_size: int = 28, first_class: int = 0
) -> ClassDataset:
    """Classes ``first_class .. first_class + n_classes - 1`` of glyph set ``seed``: (n, n_drawings, 1, S, S) float32, ink 1.0."""
    if n_classes < 0 or n_drawings < 1 or image_size < 4 or first_class < 0 or seed < 0:
        raise ConfigError(
            f"need n_classes >= 0, n_drawings >= 1, image_size >= 4, first_class >= 0 and seed >= 0; got "
            f"{n_classes}, {n_drawings}, {image_size}, {first_class}, {seed}"
        )
    images = np.empty((n_classes, n_drawings, 1, image_size, image_size), dtype=np.float32)
    for i in range(n_classes):
        strokes, width = _class_strokes(seed, first_class + i)
        starts, ends, widths = _drawing_segments(strokes, width, n_drawings, image_size, seed, first_class + i)
        images[i, :, 0] = _render(starts, ends, widths, image_size)
    indices = range(first_class, first_class + n_classes)
    return ClassDataset.dense(
        torch.from_numpy(images),
        tuple(f"glyph-{c:05d}" for c in indices),
        tuple(f"glyphs-{c // CLASSES_PER_ALPHABET:03d}" for c in indices),
        InputSpec((1, image_size, image_size), **STROKES),
    )


def glyph_splits(
    n_train: int = 800, n_val: int = 200, seed: int = 0, n_drawings: int = 20, image_size: int = 28
) -> tuple[ClassDataset, ClassDataset]:
    """(train, validation): glyph classes ``[0, n_train)`` and ``[n_train, n_train + n_val)``, disjoint by construction."""
    train = make_glyphs(n_train, n_drawings, seed, image_size, first_class=0)
    validation = make_glyphs(n_val, n_drawings, seed, image_size, first_class=n_train)
    return train, validation


def _class_strokes(seed: int, index: int) -> tuple[list[np.ndarray], float]:
    """The class's strokes as control-point arrays (k, 2) centred in the unit square, and its pen half-width in pixels."""
    rng = np.random.default_rng([seed, index])
    strokes: list[np.ndarray] = []
    anchors: list[np.ndarray] = []  # stroke ends later strokes may start from, so strokes join up
    for _ in range(int(rng.integers(2, 5))):
        n_points = int(rng.integers(2, 5))
        if anchors and rng.random() < 0.6:
            start = anchors[int(rng.integers(len(anchors)))]
        else:
            start = rng.uniform(0.1, 0.9, size=2)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        length = rng.uniform(0.35, 0.85)
        direction = np.array([math.cos(angle), math.sin(angle)])
        end = np.clip(start + length * direction, 0.0, 1.0)
        along = np.sort(rng.uniform(0.15, 0.85, size=n_points - 2))
        bend = rng.normal(0.0, 0.35 * length, size=n_points - 2)
        normal = np.array([-direction[1], direction[0]])
        middle = start + along[:, None] * (end - start) + bend[:, None] * normal
        strokes.append(np.clip(np.vstack([start, middle, end]), 0.0, 1.0))
        anchors += [start, end]
    # centre the glyph in the unit box and scale its larger side to 70-100% of it, as people write in a box
    points = np.vstack(strokes)
    low, high = points.min(0), points.max(0)
    zoom = rng.uniform(0.7, 1.0) / max(float((high - low).max()), 1e-3)
    strokes = [0.5 + (stroke - (low + high) / 2) * zoom for stroke in strokes]
    return strokes, float(rng.uniform(0.5, 0.8))


def _drawing_segments(
    strokes: list[np.ndarray], width: float, n_drawings: int, size: int, seed: int, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pen segments (n_drawings, n_segments, 2) start and end points in pixels, and per-drawing half-widths."""
    rng = np.random.default_rng([seed, index, 1])
    scale_px = size / _REFERENCE_SIZE
    centre = (size - 1) / 2.0
    angle = np.deg2rad(rng.uniform(-10.0, 10.0, n_drawings))
    scale = rng.uniform(0.9, 1.1, n_drawings) * 0.72 * size  # the unit box spans ~72% of the image
    rotation = np.stack([np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)], -1).reshape(-1, 2, 2)
    affine = rotation * scale[:, None, None]
    shift = centre + rng.uniform(-1.5, 1.5, (n_drawings, 1, 2)) * scale_px
    starts, ends = [], []
    for control in strokes:
        jittered = control + rng.normal(0.0, _JITTER, (n_drawings, *control.shape)) - 0.5
        points = _bezier_matrix(len(control)) @ jittered  # (n_drawings, n_samples, 2)
        points = points @ affine.transpose(0, 2, 1) + shift
        starts.append(points[:, :-1])
        ends.append(points[:, 1:])
    widths = width * scale_px * rng.uniform(0.85, 1.15, n_drawings)
    return np.concatenate(starts, 1), np.concatenate(ends, 1), widths


def _bezier_matrix(n_points: int) -> np.ndarray:
    """Bernstein weights (n_samples, n_points) sampling a Bezier curve; a 2-point stroke is one straight segment."""
    t = np.linspace(0.0, 1.0, 2 if n_points == 2 else _SEGMENTS_PER_CURVE + 1)[:, None]
    k = np.arange(n_points)[None, :]
    degree = n_points - 1
    return np.array([math.comb(degree, i) for i in range(n_points)]) * t**k * (1.0 - t) ** (degree - k)


def _render(starts: np.ndarray, ends: np.ndarray, widths: np.ndarray, size: int) -> np.ndarray:
    """Anti-aliased ink (n_drawings, size, size): 1 within ``width - 0.5`` px of a segment, falling linearly to 0 over 1 px.

    Distances are computed only in the box the strokes can reach, which halves the work.
    """
    points = np.concatenate([starts, ends], 1).reshape(-1, 2)
    reach = float(widths.max()) + 0.5
    low = np.clip(np.floor(points.min(0) - reach), 0, size - 1).astype(int)
    high = np.clip(np.ceil(points.max(0) + reach), 0, size - 1).astype(int) + 1
    y, x = np.mgrid[low[1] : high[1], low[0] : high[0]].astype(np.float32)
    a = starts.astype(np.float32)
    d = (ends - starts).astype(np.float32)
    length2 = np.maximum((d * d).sum(-1), 1e-6)[..., None]
    ux = x.ravel() - a[..., 0, None]  # (n_drawings, n_segments, n_pixels in the box)
    uy = y.ravel() - a[..., 1, None]
    t = ux * d[..., 0, None]
    t += uy * d[..., 1, None]
    t /= length2
    np.clip(t, 0.0, 1.0, out=t)
    ux -= t * d[..., 0, None]
    uy -= t * d[..., 1, None]
    ux *= ux
    uy *= uy
    ux += uy
    distance = np.sqrt(ux.min(axis=1))
    ink = np.clip(widths[:, None].astype(np.float32) + 0.5 - distance, 0.0, 1.0)
    image = np.zeros((len(starts), size, size), dtype=np.float32)
    image[:, low[1] : high[1], low[0] : high[0]] = ink.reshape(len(starts), *x.shape)
    return image
