"""Tests for the datasets subpackage: Omniglot loading and caching, splits, glyphs and sine tasks."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from edgeadapt.sdk.datasets import omniglot as omniglot_module
from edgeadapt.sdk.datasets.glyphs import glyph_splits, make_glyphs
from edgeadapt.sdk.datasets.omniglot import (OMNIGLOT_VALIDATION_ALPHABETS, load_omniglot, omniglot_path,
                                             omniglot_splits, preprocess_omniglot)
from edgeadapt.sdk.datasets.paths import find_data_dir
from edgeadapt.sdk.datasets.sine import SineTaskSampler
from edgeadapt.sdk.errors import DatasetError

# alphabet -> character folders; "character9" before "character10" checks numeric (not text) order
LAYOUT = {"Latin": ["character10", "character9"], "Greek": ["character01", "character02"]}
N_DRAWINGS = 3


def _png(box: tuple[int, int, int, int] | None) -> bytes:
    """A 105x105 1-bit PNG, white paper, with an optional black (ink) rectangle."""
    image = Image.new("1", (105, 105), 1)
    if box is not None:
        ImageDraw.Draw(image).rectangle(box, fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _entries(layout: dict[str, list[str]], n_drawings: int = N_DRAWINGS) -> dict[str, bytes]:
    """Relative paths under the set folder -> PNG bytes; each class's ink box sits at its own place."""
    entries = {}
    for a, alphabet in enumerate(sorted(layout)):
        for c, character in enumerate(layout[alphabet]):
            for d in range(n_drawings):
                x, y = 10 + (17 * a) % 50 + d, 10 + (23 * c) % 50
                entries[f"{alphabet}/{character}/{a:02d}{c:02d}_{d + 1:02d}.png"] = _png((x, y, x + 30, y + 30))
    return entries


def _write_zip(path: Path, entries: dict[str, bytes], set_name: str = "images_background") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(f"{set_name}/{name}", data)
    return path


def _write_folder(root: Path, entries: dict[str, bytes]) -> Path:
    for name, data in entries.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def omniglot_zip(tmp_path: Path) -> Path:
    return _write_zip(tmp_path / "images_background.zip", _entries(LAYOUT))


def test_zip_loads_with_shapes_order_and_polarity(omniglot_zip: Path, cache: Path) -> None:
    ds = load_omniglot(omniglot_zip, cache_dir=cache)
    assert ds.images.shape == (4, N_DRAWINGS, 1, 28, 28)
    assert ds.images.dtype == torch.float32
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    assert ds.class_names == ("Greek/character01", "Greek/character02", "Latin/character9", "Latin/character10")
    assert ds.groups == ("Greek", "Greek", "Latin", "Latin")
    # mostly white paper -> mostly 0.0; the 31x31 ink box (~8% of the page) -> ~1.0
    assert float((ds.images < 0.05).float().mean()) > 0.8
    assert float(ds.images.max()) > 0.99
    # drawings sorted by filename: drawing d's box is shifted d pixels right
    ink_columns = ds.images[0, :, 0].sum(1)
    centres = (ink_columns * torch.arange(28)).sum(1) / ink_columns.sum(1)
    assert torch.all(centres[1:] > centres[:-1])


def test_folder_layout_matches_zip(tmp_path: Path, omniglot_zip: Path, cache: Path) -> None:
    from_zip = load_omniglot(omniglot_zip, cache_dir=cache)
    set_folder = _write_folder(tmp_path / "extracted" / "images_background", _entries(LAYOUT))
    for path in (set_folder, set_folder.parent):
        from_folder = load_omniglot(path, cache_dir=cache)
        assert torch.equal(from_folder.images, from_zip.images)
        assert from_folder.class_names == from_zip.class_names
        assert from_folder.groups == from_zip.groups


def test_evaluation_zip_loads(tmp_path: Path, cache: Path) -> None:
    path = _write_zip(tmp_path / "images_evaluation.zip", _entries(LAYOUT), set_name="images_evaluation")
    assert load_omniglot(path, cache_dir=cache).n_classes == 4


def test_cache_second_load_skips_decoding(
    omniglot_zip: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_omniglot(omniglot_zip, cache_dir=cache)
    assert len(list(cache.glob("omniglot-*.npz"))) == 1
    assert sorted(p.name for p in omniglot_zip.parent.iterdir()) == ["cache", "images_background.zip"]

    def no_decoding(raw: np.ndarray) -> np.ndarray:
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(omniglot_module, "preprocess_omniglot", no_decoding)
    second = load_omniglot(omniglot_zip, cache_dir=cache)
    assert torch.equal(second.images, first.images)
    assert second.class_names == first.class_names and second.groups == first.groups


def test_cache_dir_from_environment(omniglot_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEADAPT_CACHE", str(tmp_path / "env-cache"))
    load_omniglot(omniglot_zip)
    assert len(list((tmp_path / "env-cache").glob("omniglot-*.npz"))) == 1


def test_corrupt_cache_is_decoded_again(
    omniglot_zip: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = load_omniglot(omniglot_zip, cache_dir=cache)
    (cache_file,) = cache.glob("omniglot-*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        again = load_omniglot(omniglot_zip, cache_dir=cache)
    assert torch.equal(again.images, first.images)
    assert any("cache" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert cache_file.stat().st_size > 1000  # rewritten whole


def _unequal(tmp_path: Path) -> Path:
    entries = _entries(LAYOUT)
    del entries["Latin/character9/0101_03.png"]
    return _write_zip(tmp_path / "images_background.zip", entries)


def _corrupt_png(tmp_path: Path) -> Path:
    entries = _entries(LAYOUT)
    entries["Greek/character02/0001_02.png"] = b"\x89PNG\r\n\x1a\n not really a png"
    return _write_zip(tmp_path / "images_background.zip", entries)


def _empty_character(tmp_path: Path) -> Path:
    root = _write_folder(tmp_path / "images_background", _entries(LAYOUT))
    (root / "Greek" / "character03").mkdir()
    return root


def _wrong_layout(tmp_path: Path) -> Path:
    return _write_zip(tmp_path / "images_background.zip", _entries(LAYOUT), set_name="some_other_folder")


def _truncated(tmp_path: Path) -> Path:
    good = _write_zip(tmp_path / "good.zip", _entries(LAYOUT))
    path = tmp_path / "images_background.zip"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return path


def _not_a_zip(tmp_path: Path) -> Path:
    path = tmp_path / "images_background.zip"
    path.write_text("hello, I am text")
    return path


@pytest.mark.parametrize(
    "make_path, expected",
    [
        (lambda tmp: tmp / "missing.zip", "does not exist"),
        (_not_a_zip, "not a readable zip"),
        (_truncated, "not a readable zip"),
        (_wrong_layout, "images_background"),
        (_unequal, "same number"),
        (_corrupt_png, "cannot read PNG"),
        (_empty_character, "no PNG"),
        (lambda tmp: tmp, "images_background"),  # a folder without any set folder
    ],
    ids=["missing", "not-zip", "truncated", "wrong-layout", "unequal", "corrupt-png", "empty-char", "empty-dir"],
)
def test_broken_inputs_raise_dataset_error(tmp_path: Path, cache: Path, make_path, expected: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = make_path(data)
    with pytest.raises(DatasetError) as info:
        load_omniglot(path, cache_dir=cache)
    message = str(info.value)
    assert str(path) in message and expected in message
    assert "\n" not in message
    assert not cache.exists() or not list(cache.glob("*.npz"))


def test_preprocess_bool_and_uint8_agree() -> None:
    rng = np.random.default_rng(0)
    paper = rng.random((2, 3, 105, 105)) > 0.1  # True = paper, mostly
    as_bool = preprocess_omniglot(paper)
    as_uint8 = preprocess_omniglot(paper.astype(np.uint8) * 255)
    assert as_bool.shape == (2, 3, 28, 28) and as_bool.dtype == np.float32
    np.testing.assert_array_equal(as_bool, as_uint8)
    assert 0.0 <= as_bool.min() and as_bool.max() <= 1.0
    np.testing.assert_array_equal(preprocess_omniglot(np.ones((105, 105), bool)), np.zeros((28, 28), np.float32))
    np.testing.assert_array_equal(preprocess_omniglot(np.zeros((105, 105), bool)), np.ones((28, 28), np.float32))
    with pytest.raises(TypeError):
        preprocess_omniglot(paper.astype(np.float32))


def test_omniglot_splits_by_alphabet(tmp_path: Path, cache: Path) -> None:
    layout = {name: ["character01"] for name in OMNIGLOT_VALIDATION_ALPHABETS + ("Latin", "Greek")}
    ds = load_omniglot(_write_zip(tmp_path / "images_background.zip", _entries(layout, 2)), cache_dir=cache)
    train, val = omniglot_splits(ds)
    assert val.n_classes == 6 and set(val.groups) == set(OMNIGLOT_VALIDATION_ALPHABETS)
    assert train.n_classes == 2 * 4 and set(train.groups) == {"Latin", "Greek"}
    assert torch.equal(train.images[2], torch.rot90(train.images[0], 1, dims=(-2, -1)))
    plain_train, _ = omniglot_splits(ds, rotate_train=False)
    assert plain_train.n_classes == 2
    with pytest.raises(DatasetError, match="Bengali"):
        omniglot_splits(ds.select_groups(["Latin", "Greek", "Korean"]))


def test_find_data_dir_and_omniglot_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_data_dir(tmp_path) == tmp_path
    with pytest.raises(DatasetError, match="does not exist"):
        find_data_dir(tmp_path / "nope")
    monkeypatch.setenv("EDGEADAPT_DATA", str(tmp_path))
    assert find_data_dir() == tmp_path
    with pytest.raises(DatasetError, match="no Omniglot background set"):
        omniglot_path(tmp_path)
    (tmp_path / "omniglot" / "images_background").mkdir(parents=True)
    assert omniglot_path(tmp_path) == tmp_path / "omniglot" / "images_background"
    (tmp_path / "omniglot" / "images_background.zip").write_bytes(b"")
    assert omniglot_path(tmp_path) == tmp_path / "omniglot" / "images_background.zip"


def test_glyphs_shape_and_determinism() -> None:
    ds = make_glyphs(6, n_drawings=4, seed=3)
    assert ds.images.shape == (6, 4, 1, 28, 28) and ds.images.dtype == torch.float32
    assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0
    assert 0.02 < float(ds.images.mean()) < 0.2  # strokes on paper, not blobs or blanks
    assert ds.class_names[2] == "glyph-00002" and ds.groups[2] == "glyphs-000"
    assert torch.equal(make_glyphs(6, n_drawings=4, seed=3).images, ds.images)
    assert not torch.equal(make_glyphs(6, n_drawings=4, seed=4).images, ds.images)
    shifted = make_glyphs(2, n_drawings=4, seed=3, first_class=4)
    assert torch.equal(shifted.images, ds.images[4:6])
    assert shifted.class_names == ds.class_names[4:6]
    assert make_glyphs(21, n_drawings=1).groups[20] == "glyphs-001"


def test_glyph_classes_are_distinguishable_but_not_trivially() -> None:
    images = make_glyphs(20, n_drawings=10, seed=0).images.reshape(200, -1)
    distances = torch.cdist(images, images).fill_diagonal_(float("inf"))
    labels = torch.arange(20).repeat_interleave(10)
    accuracy = (labels[distances.argmin(1)] == labels).float().mean().item()
    # leave-one-out pixel nearest neighbour over 20 classes: chance is 0.05 (Omniglot gives ~0.6)
    assert 0.5 < accuracy < 0.99


def test_glyph_splits_are_disjoint() -> None:
    train, val = glyph_splits(n_train=5, n_val=3, seed=1, n_drawings=2)
    assert train.n_classes == 5 and val.n_classes == 3
    assert not set(train.class_names) & set(val.class_names)
    assert torch.equal(val.images, make_glyphs(3, n_drawings=2, seed=1, first_class=5).images)


def test_sine_sampler_shapes_and_determinism() -> None:
    sampler = SineTaskSampler(shots=5, query=7, seed=1)
    assert sampler.loss == "mse" and sampler.input_shape == (1,)
    sx, sy, qx, qy = sampler.sample(3)
    assert sx.shape == sy.shape == (3, 5, 1) and qx.shape == qy.shape == (3, 7, 1)
    assert all(t.dtype == torch.float32 for t in (sx, sy, qx, qy))
    assert float(sx.min()) >= -5.0 and float(sx.max()) <= 5.0 and float(sy.abs().max()) <= 5.0
    again = SineTaskSampler(shots=5, query=7, seed=1).sample(3)
    assert all(torch.equal(a, b) for a, b in zip((sx, sy, qx, qy), again))
    assert not torch.equal(SineTaskSampler(shots=5, query=7, seed=2).sample(3)[0], sx)
    assert not torch.equal(sampler.sample(3)[0], sx)  # the stream moves on
    task = next(iter(SineTaskSampler(shots=5, query=7, seed=1)))
    assert [tuple(t.shape) for t in task] == [(5, 1), (5, 1), (7, 1), (7, 1)]
    single = SineTaskSampler(shots=5, query=7, seed=1).sample(1)
    assert all(torch.equal(t, b[0]) for t, b in zip(task, single))
    # support and query lie on one sine: y = A sin(x - phase) fitted from the support predicts the query
    basis = lambda x: torch.cat([torch.sin(x), torch.cos(x)], -1).double()  # noqa: E731
    coef = torch.linalg.lstsq(basis(sx[0]), sy[0].double()).solution
    assert torch.allclose(basis(qx[0]) @ coef, qy[0].double(), atol=1e-4)


def _real_background_zip() -> Path | None:
    try:
        path = find_data_dir() / "omniglot" / "images_background.zip"
    except DatasetError:
        return None
    return path if path.is_file() else None


@pytest.mark.skipif(_real_background_zip() is None, reason="real Omniglot data not found (set EDGEADAPT_DATA)")
def test_real_omniglot_background(monkeypatch) -> None:
    import edgeadapt.sdk.datasets.omniglot as omniglot

    path = _real_background_zip()
    load_omniglot(path)  # fills the user cache on the first run (~7 s)

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached set was decoded again")

    monkeypatch.setattr(omniglot, "_decode", no_decoding)  # the second load is served from the cache
    ds = load_omniglot(path)
    assert ds.images.shape == (964, 20, 1, 28, 28)
    assert len(set(ds.groups)) == 30
    train, val = omniglot_splits(ds)
    assert train.n_classes == 758 * 4 and val.n_classes == 206
    assert 0.03 < float(ds.images.mean()) < 0.2  # ink is the minority
