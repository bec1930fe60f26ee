"""On-device continual personalisation: classes arriving one batch at a time, learned by two designs of update.

- A, ``AdaptedLearner.update`` (shipped): re-adapt the meta-learned weights, through the artifact's ``adapt`` graph,
  to a stored support set of the most recent ``max_shots`` examples per class plus the new examples.
- B, fast/slow consolidation (measured here only, in PyTorch; not exported): continue from the adapted head; each new
  class's rows start at its prototype; K SGD steps (the artifact's inner_lr and inner_steps) on the *new* examples
  only, of cross-entropy over all classes seen plus lambda/2 ||theta - theta_slow||^2; then
  theta_slow += alpha_m (theta - theta_slow). It stores no examples. Its predictions go through the artifact's
  ``predict`` graph; lambda and alpha_m are chosen on separate tuning streams.

Streams: (a) 20 Omniglot validation classes (the 6 validation alphabets) arriving 4 at a time with 5 examples each,
the validation twin (trained on the other 24 alphabets) exported head-only as the shipped model is; (b) one FSDD speaker
held out of a small log-mel Conv4 pretrained on the other five, its digits arriving one at a time (the first arrival
two digits: adaptation needs two classes) with 5 examples each. Accuracy on held-out examples of every class seen so
far, after each arrival.

    python benchmarks/continual_device.py [--streams 1000] [--speaker theo]
"""

from __future__ import annotations

import argparse
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

import edgeadapt.runtime as rt
from deployment import ROOT, data_dir, reference
from edgeadapt.export import export_artifact
from edgeadapt.runtime.format.files import atomic_write
from edgeadapt.sdk import Conv4
from edgeadapt.sdk.datasets import load_omniglot, omniglot_path, omniglot_splits
from edgeadapt.sdk.datasets.fsdd import SpokenDigits, load_fsdd
from edgeadapt.sdk.heads import prototype_head
from edgeadapt.sdk.inner_loop import InnerLoop, mask_classes
from edgeadapt.sdk.pretraining import PretrainConfig, pretrain
from report import markdown_table, write_section

TWIN = ROOT / "runs" / "omniglot-conv4-train" / "checkpoint"  # bash models/reproduce_omniglot_conv4.sh train
RUNS = ROOT / "runs" / "continual-device"
SHOTS = 5
GRID = [(lam, alpha) for lam in (0.0, 1.0, 3.0, 10.0) for alpha in (0.0, 0.5)]  # B's (lambda, alpha_m)
TUNING_SEED = 10_000  # tuning streams are drawn from seeds disjoint from the reported ones
AUDIO_RECIPE = {"scope": "head", "head_init": "prototypes", "head_scale": 0.05, "inner_steps": 3, "inner_lr": 0.1}


@dataclass(frozen=True)
class Arrival:
    """New examples (labels are class ids) and held-out queries of the same classes."""

    x: np.ndarray
    y: list[int]
    query_x: np.ndarray
    query_y: np.ndarray


Stream = list[Arrival]


def omniglot_streams(images: np.ndarray, count: int, seed: int, classes: int = 20, per: int = 4) -> Iterator[Stream]:
    """``classes`` random validation classes arriving ``per`` at a time, SHOTS drawings each (the rest: queries)."""
    for s in range(count):
        rng = np.random.default_rng(seed + s)
        chosen = rng.choice(len(images), classes, replace=False)
        yield [_arrival(images, chosen[i: i + per], rng) for i in range(0, classes, per)]


def speaker_streams(features: np.ndarray, count: int, seed: int) -> Iterator[Stream]:
    """One speaker's ten digits in a random order, two then one at a time, SHOTS takes each (the rest: queries)."""
    for s in range(count):
        rng = np.random.default_rng(seed + s)
        order = rng.permutation(10)
        yield [_arrival(features, order[:2], rng)] + [_arrival(features, order[i: i + 1], rng) for i in range(2, 10)]


def _arrival(images: np.ndarray, classes: np.ndarray, rng: np.random.Generator) -> Arrival:
    picks = [rng.permutation(images.shape[1]) for _ in classes]
    x = np.concatenate([images[c, p[:SHOTS]] for c, p in zip(classes, picks)])
    query_x = np.concatenate([images[c, p[SHOTS:]] for c, p in zip(classes, picks)])
    return Arrival(x, [int(c) for c in classes for _ in range(SHOTS)], query_x,
                   np.repeat(classes, images.shape[1] - SHOTS))


class Replay:
    """Design A: ``AdaptedLearner.update`` (the runtime's, through the artifact)."""

    name = "A: re-adapt on a stored support set (shipped)"

    def __init__(self, learner: rt.Learner):
        self.learner = learner

    def first(self, x: np.ndarray, y: list[int]):
        return self.learner.adapt(x, y)

    def update(self, state, x: np.ndarray, y: list[int]):
        return state.update(x, y)

    def predictor(self, state) -> rt.AdaptedLearner:
        return state


class Consolidation:
    """Design B: continue from the adapted head with an elastic pull towards slow weights (PyTorch, not exported)."""

    def __init__(self, learner: rt.Learner, inner: InnerLoop, lam: float, alpha: float):
        self.learner, self.inner, self.lam, self.alpha = learner, inner, lam, alpha
        self.name = f"B: fast/slow consolidation (lambda {lam:g}, alpha_m {alpha:g})"

    def _features(self, x: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.inner.model.features(torch.from_numpy(x))

    def first(self, x: np.ndarray, y: list[int]):
        adapted = self.learner.adapt(x, y)
        index = {c: i for i, c in enumerate(adapted.classes)}
        slow = self._prototypes(x, [index[c] for c in y])
        return adapted, slow

    def _prototypes(self, x: np.ndarray, labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        features = self._features(x)
        return prototype_head(features, torch.tensor(labels), torch.ones(len(labels)), self.learner.max_ways,
                              self.inner.head_scale)

    def update(self, state, x: np.ndarray, y: list[int]):
        adapted, (slow_w, slow_b) = state
        added = [c for c in dict.fromkeys(y) if c not in adapted.classes]
        classes = adapted.classes + tuple(added)
        if len(classes) > self.learner.max_ways:
            raise rt.InputError(f"{len(classes)} classes exceed max_ways={self.learner.max_ways}")
        labels = torch.tensor([classes.index(c) for c in y])
        new = torch.zeros(self.learner.max_ways, dtype=torch.bool)
        new[[classes.index(c) for c in added]] = True
        proto_w, proto_b = self._prototypes(x, labels.tolist())
        weight = torch.where(new[:, None], proto_w, torch.from_numpy(adapted._params["head.weight"]))
        bias = torch.where(new, proto_b, torch.from_numpy(adapted._params["head.bias"]))
        slow_w, slow_b = torch.where(new[:, None], proto_w, slow_w), torch.where(new, proto_b, slow_b)
        features = self._features(x)
        class_mask = (torch.arange(self.learner.max_ways) < len(classes)).float()
        for _ in range(self.inner.inner_steps):
            weight, bias = weight.detach().requires_grad_(), bias.detach().requires_grad_()
            logits = mask_classes(features @ weight.T + bias, class_mask)
            loss = F.cross_entropy(logits, labels) + self.lam / 2 * (
                ((weight - slow_w) ** 2).sum() + ((bias - slow_b) ** 2).sum())
            gw, gb = torch.autograd.grad(loss, (weight, bias))
            weight, bias = weight - self.inner.inner_lr * gw, bias - self.inner.inner_lr * gb
        weight, bias = weight.detach(), bias.detach()
        slow = (slow_w + self.alpha * (weight - slow_w), slow_b + self.alpha * (bias - slow_b))
        params = {"head.weight": weight.numpy().copy(), "head.bias": bias.numpy().copy()}
        return rt.AdaptedLearner(self.learner, classes, params), slow

    def predictor(self, state) -> rt.AdaptedLearner:
        return state[0]


def run(design, stream: Stream, reference_inner: InnerLoop | None = None) -> tuple[list[float], list[float],
                                                                                      list[float]]:
    """Accuracy on all classes seen so far, update latency (ms), and for A the same re-adaptation in PyTorch eager
    (ms, when ``reference_inner`` is given), after each arrival."""
    state, accuracies, latencies, eager = None, [], [], []
    queries, answers = [], []
    for arrival in stream:
        start = time.perf_counter()
        state = design.first(arrival.x, arrival.y) if state is None else design.update(state, arrival.x, arrival.y)
        latencies.append(1000 * (time.perf_counter() - start))
        if reference_inner is not None:
            eager.append(_eager_ms(reference_inner, state))
        queries.append(arrival.query_x)
        answers.append(arrival.query_y)
        predicted = design.predictor(state).predict(np.concatenate(queries))
        accuracies.append(float(np.mean(np.array(predicted) == np.concatenate(answers))))
    return accuracies, latencies, eager


def _eager_ms(inner: InnerLoop, adapted: rt.AdaptedLearner) -> float:
    """Milliseconds PyTorch (eager, this process's threads) takes for the adaptation A's update ran."""
    support = adapted._support
    class_mask = (torch.arange(inner.ways) < len(adapted.classes)).float()
    start = time.perf_counter()
    inner.inner_update(inner.params(), torch.from_numpy(support.x), torch.from_numpy(support.y),
                       class_mask=class_mask)
    return 1000 * (time.perf_counter() - start)


def mean_ci(values: list[float]) -> str:
    a = 100 * np.asarray(values)
    return f"{a.mean():.1f} ± {1.96 * a.std(ddof=1) / math.sqrt(len(a)):.1f}"


def tune(learner: rt.Learner, inner: InnerLoop, streams: Callable[[int, int], Iterator[Stream]],
         count: int) -> tuple[Consolidation, dict]:
    """B's (lambda, alpha_m) with the best mean final accuracy on ``count`` tuning streams."""
    tuning = list(streams(count, TUNING_SEED))
    scores = {(lam, alpha): float(np.mean([run(Consolidation(learner, inner, lam, alpha), s)[0][-1] for s in tuning]))
              for lam, alpha in GRID}
    best = max(scores, key=scores.get)
    return Consolidation(learner, inner, *best), scores


def check_fidelity(learner: rt.Learner, inner: InnerLoop, stream: Stream, atol: float = 1e-4) -> float:
    """The largest difference between A's probabilities after a whole stream and PyTorch's on the same stored
    support set (so the checkpoint is the one the artifact was exported from); AssertionError above ``atol``."""
    adapted = learner.adapt(stream[0].x, stream[0].y)
    for arrival in stream[1:]:
        adapted = adapted.update(arrival.x, arrival.y)
    queries = np.concatenate([a.query_x for a in stream])
    class_mask = (torch.arange(inner.ways) < len(adapted.classes)).float()
    expected = inner.probabilities(torch.from_numpy(adapted._support.x), torch.from_numpy(adapted._support.y),
                                   torch.from_numpy(queries), class_mask)[:, : len(adapted.classes)].numpy()
    difference = float(np.abs(adapted.predict_proba(queries) - expected).max())
    assert difference <= atol, f"the artifact differs from its checkpoint by {difference:.1e}"
    return difference


def measure(title: str, learner: rt.Learner, inner: InnerLoop, streams: Callable[[int, int], Iterator[Stream]],
            count: int, tuning: int, describe: str, labels: list[str]) -> list[str]:
    """The section lines for one kind of stream: accuracy and latency after each arrival, per design."""
    difference = check_fidelity(learner, inner, next(streams(1, TUNING_SEED - 1)))
    b, scores = tune(learner, inner, streams, tuning)
    designs = [Replay(learner), b]
    results = {d.name: [] for d in designs}
    for i, stream in enumerate(streams(count, 0)):
        for d in designs:
            results[d.name].append(run(d, stream, inner if isinstance(d, Replay) and i < 50 else None))
        if (i + 1) % 50 == 0:
            print(f"{title}: {i + 1}/{count} streams", flush=True)
    lines = [f"### {title}", "", describe, "",
             f"Accuracy (%, mean ± 95% CI over {count} streams) on held-out examples of every class seen so far, "
             "after each arrival:", ""]
    rows = [[name] + [mean_ci([r[0][k] for r in runs]) for k in range(len(labels))] for name, runs in results.items()]
    lines += markdown_table(["design"] + labels, rows)
    lines += ["", "Update latency (ms, median over streams; arrival 1 is `adapt`). A runs in onnxruntime (1 thread); "
              "B's update runs in PyTorch eager (1 thread), so the last row (A's re-adaptation computed by PyTorch "
              "eager, first 50 streams) is the baseline that B's row compares with:", ""]
    rows = [[name] + [f"{np.median([r[1][k] for r in runs]):.1f}" for k in range(len(labels))]
            for name, runs in results.items()]
    eager = [r[2] for r in results[designs[0].name] if r[2]]
    rows.append(["A's re-adaptation in PyTorch eager"] + [f"{np.median([e[k] for e in eager]):.1f}"
                                                           for k in range(len(labels))])
    lines += markdown_table(["design"] + labels, rows)
    grid = ", ".join(f"({lam:g}, {alpha:g}): {100 * s:.1f}" for (lam, alpha), s in scores.items())
    lines += ["", f"A after a whole stream agrees with PyTorch on the same stored support set within {difference:.0e} "
              f"(probabilities). B's (lambda, alpha_m) chosen by final accuracy (%) on {tuning} tuning streams drawn from other "
              f"seeds: {grid}.", ""]
    print(f"{title}: final accuracy " + "; ".join(f"{n}: {mean_ci([r[0][-1] for r in runs])}"
                                                   for n, runs in results.items()), flush=True)
    return lines


def audio_artifact(digits: SpokenDigits, speaker: str, epochs: int) -> Path:
    """A log-mel Conv4 pretrained on every speaker but ``speaker``, exported head-only (built once into runs/)."""
    folder = RUNS / f"fsdd-without-{speaker}"
    if (folder / "artifact" / "manifest.json").exists():
        return folder / "artifact"
    torch.manual_seed(0)
    classes = digits.classes([s for s in digits.speakers if s != speaker])
    model = Conv4(ways=10, hidden=32, activation="elu")
    pretrain(model, classes, PretrainConfig(epochs=epochs, batch_size=64), checkpoint_dir=folder / "checkpoint",
             data={"dataset": "fsdd", "held_out_speaker": speaker, "features": "log-mel 28x28 (runtime.audio)"},
             progress=False)
    export_artifact(folder / "checkpoint", folder / "artifact", max_ways=10, max_shots=10, executorch=False,
                    **AUDIO_RECIPE)
    return folder / "artifact"


def cached_features(data: Path) -> SpokenDigits:
    """FSDD as log-mel images, computed once into runs/ (no pickle)."""
    path = RUNS / "fsdd-log-mel.npz"
    if not path.exists():
        digits = load_fsdd(data)
        buffer = io.BytesIO()
        np.savez(buffer, features=digits.features, speakers=np.array(digits.speakers))
        atomic_write(path, buffer.getvalue())
    with np.load(path, allow_pickle=False) as stored:
        return SpokenDigits(stored["features"], tuple(stored["speakers"].tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000, help="reported streams per kind")
    parser.add_argument("--tuning-streams", type=int, default=30, help="streams B's lambda and alpha_m are tuned on")
    parser.add_argument("--twin", type=Path, default=TWIN, help="checkpoint of the Omniglot validation twin")
    parser.add_argument("--speaker", default="theo", help="the FSDD speaker held out of the audio model")
    parser.add_argument("--epochs", type=int, default=10, help="pretraining epochs of the audio model")
    parser.add_argument("--only", choices=("omniglot", "fsdd"), default=None)
    parser.add_argument("--no-report", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    torch.set_num_threads(1)
    body = ["## Continual personalisation on the device", "", __doc__.split("\n\n")[1], "",
            __doc__.split("\n\n")[2].replace("\n", " "), ""]
    if args.only in (None, "omniglot"):
        artifact = RUNS / "omniglot-twin-head"
        if not (artifact / "manifest.json").exists():
            export_artifact(args.twin, artifact, executorch=False, scope="head", max_ways=20, max_shots=10)
        _, validation = omniglot_splits(load_omniglot(omniglot_path(data_dir())))
        images = validation.images.numpy()
        body += measure("Omniglot: 20 validation classes, 4 at a time", rt.load(artifact, threads=1),
                        reference(artifact, args.twin), lambda n, s: omniglot_streams(images, n, s), args.streams,
                        args.tuning_streams, f"{validation.n_classes} validation classes; 5 drawings per class "
                        "arrive, the other 15 are queries. Artifact: the validation twin exported head-only, "
                        "max_ways 20, max_shots 10.", [f"{4 * (k + 1)} classes" for k in range(5)])
    if args.only in (None, "fsdd"):
        digits = cached_features(data_dir())
        artifact = audio_artifact(digits, args.speaker, args.epochs)
        features = digits.features[digits.speakers.index(args.speaker)]
        body += measure(f"FSDD: a new speaker ({args.speaker}), one digit at a time", rt.load(artifact, threads=1),
                        reference(artifact, artifact.parent / "checkpoint"),
                        lambda n, s: speaker_streams(features, n, s), args.streams, args.tuning_streams,
                        f"A Conv4 (32 filters) on 28x28 log-mel images (`edgeadapt.runtime.audio.log_mel`, 0.75 s), "
                        f"pretrained {args.epochs} epochs as a 10-digit classifier on the other "
                        f"{len(digits.speakers) - 1} speakers, exported head-only with prototypes (head_scale 0.05, "
                        "3 steps of 0.1); 5 takes per digit arrive, the other 45 are queries.",
                        ["2 digits"] + [f"{k} digits" for k in range(3, 11)])
    if not args.no_report:
        command = f"python benchmarks/continual_device.py --streams {args.streams} --tuning-streams {args.tuning_streams}"
        write_section("continual-device", "\n".join(body), command)


if __name__ == "__main__":
    main()
