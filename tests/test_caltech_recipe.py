"""models/reproduce_caltech101_mobilenet.sh as written, on a small folder of Caltech-101 photos: import the TFLite
model, train the last block on cached frozen layers (two views a photo), export a head-adapting artifact, adapt it
through the runtime to photos of classes it never trained on (slow: the export of a 224x224 MobileNet V1 takes a
minute or two)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeadapt.runtime as rt
from edgeadapt.sdk.datasets.source import DataSource, load_source
from edgeadapt.sdk.datasets.splits import SplitRule, split_classes

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EDGEADAPT_DATA", ROOT.parent / "shared" / "data"))
MODEL = DATA / "pretrained" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
PHOTOS = DATA / "caltech101" / "images"
CLASSES, PER_CLASS = 8, 10


@pytest.mark.slow
@pytest.mark.skipif(not (MODEL.is_file() and PHOTOS.is_dir()), reason="Caltech-101 or the TFLite model not found")
def test_the_caltech_recipe_makes_an_artifact_that_adapts_to_new_photos(tmp_path):
    pytest.importorskip("tflite", reason="the tflite package (the import extra) is not installed")
    data = tmp_path / "data"
    (data / "pretrained").mkdir(parents=True)
    (data / "pretrained" / MODEL.name).symlink_to(MODEL)
    for folder in sorted(p for p in PHOTOS.iterdir() if p.is_dir())[:CLASSES]:
        (data / "caltech101" / "images" / folder.name).mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(photo, data / "caltech101" / "images" / folder.name / photo.name)
    env = {**os.environ, "EDGEADAPT_DATA": str(data), "REPRO_EPOCHS": "2", "REPRO_OUT": str(tmp_path / "artifact"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           "EDGEADAPT_CACHE": str(tmp_path / "cache")}
    subprocess.run(["bash", str(ROOT / "models" / "reproduce_caltech101_mobilenet.sh"), "train"], cwd=tmp_path,
                   env=env, check=True, timeout=1500)

    learner = rt.load(tmp_path / "artifact", threads=1)
    assert learner.self_test() <= 1e-4  # its reference task, kept small for 224x224 inputs, reproduces PyTorch
    assert (tmp_path / "artifact" / "selfcheck.npz").stat().st_size < 10e6
    manifest = json.loads((tmp_path / "artifact" / "manifest.json").read_text())
    assert manifest["scope"] == "head" and manifest["inner_steps"] == 5 and manifest["head_scale"] == 0.03
    assert manifest["data"]["name"] == "Caltech-101 (80 of its 101 classes)"
    trained = json.loads((tmp_path / "runs" / "caltech101-pretrain-train" / "checkpoint" / "config.json").read_text())
    assert trained["pretraining"]["views"] == 2 and trained["pretraining"]["scope"] == "last_block"
    source = DataSource(data / "caltech101" / "images", image_size=224, value_range=(-1.0, 0.9921875))
    photos = load_source(source)
    train, held_out = split_classes(photos, SplitRule(validation=0.3, seed=0))  # the script's split
    assert trained["data"]["classes"] == train.n_classes and held_out.n_classes >= 2
    support, query, support_y, query_y = [], [], [], []
    for c, name in enumerate(held_out.class_names):
        x = held_out.decode(held_out.class_examples(c)).numpy()
        support.append(x[:3]), query.append(x[3:])
        support_y += [name] * 3
        query_y += [name] * len(x[3:])
    adapted = learner.adapt(np.concatenate(support), support_y)
    accuracy = float(np.mean([p == y for p, y in zip(adapted.predict(np.concatenate(query)), query_y)]))
    assert accuracy > 1.5 / held_out.n_classes, accuracy  # an ImageNet backbone tells new object classes apart
