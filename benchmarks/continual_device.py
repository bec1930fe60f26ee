"""On-device continual personalisation: classes arriving one batch at a time, learned by two designs of update.

- A, ``AdaptedLearner.update`` (shipped): re-adapt the meta-learned weights, through the artifact's ``adapt`` graph,
  to a stored support set of at most ``max_shots`` examples per class plus the new examples (these streams offer
  no class more than ``max_shots``, so nothing is dropped and the keep policy plays no part).
- B, fast/slow consolidation (measured here only, in PyTorch; not exported): continue from the adapted head; each new
  class's rows start at its prototype; K SGD steps (the artifact's inner_lr and inner_steps) on the *new* examples
  only, of cross-entropy over all classes seen plus lambda/2 ||theta - theta_slow||^2; then
  theta_slow += alpha_m (theta - theta_slow). It stores no examples. Its predictions go through the artifact's
  ``predict`` graph; lambda and alpha_m are chosen on separate tuning streams.

Streams: (a) 20 Omniglot validation classes (the 6 validation alphabets) arriving 4 at a time with 5 examples each,
the validation twin (trained on the other 24 alphabets) exported head-only as the shipped model is; (b) each FSDD
speaker in turn held out of a small log-mel Conv4 pretrained on the other five (one model per held-out speaker), the
held-out speaker's digits arriving one at a time (the first arrival two digits: adaptation needs two classes) with 5
examples each, the reported streams split evenly between the speakers. Accuracy on held-out examples of every class
seen so far, after each arrival.

Keep policies (``--only keep``, its own section): ``update(..., keep="newest")`` against ``keep="reservoir"`` on the
same streams of MNIST digits revisited, so that every digit is offered more examples than ``max_shots`` and the
policies store different examples (see :func:`keep_streams`).

    python benchmarks/continual_device.py [--streams 1000] [--speaker NAME] [--only omniglot|fsdd|keep]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

import edgeadapt.runtime as rt
from deployment import PRETRAINED, ROOT, reference
from edgeadapt.export import export_artifact
from edgeadapt.runtime.format.files import atomic_write
from edgeadapt.runtime.learner import DEFAULT_KEEP
from edgeadapt.runtime.memory import KEEP_POLICIES
from edgeadapt.sdk import Conv4
from edgeadapt.sdk.datasets import find_data_dir, load_omniglot, omniglot_path, omniglot_splits
from edgeadapt.sdk.datasets.fsdd import SpokenDigits, load_fsdd
from edgeadapt.sdk.datasets.mnist import load_mnist
from edgeadapt.sdk.evaluation import EvalResult
from edgeadapt.sdk.heads import prototype_head
from edgeadapt.sdk.inner_loop import InnerLoop, mask_classes
from edgeadapt.sdk.pretraining import PretrainConfig, pretrain
from report import markdown_table, write_section

TWIN = ROOT / "runs" / "omniglot-conv4-train" / "checkpoint"  # bash models/reproduce_omniglot_conv4.sh train
RUNS = ROOT / "runs" / "continual-device"
SHOTS = 5
GRID = [(lam, alpha) for lam in (0.0, 1.0, 3.0, 10.0) for alpha in (0.0, 0.5)]  # B's (lambda, alpha_m)
TUNING_SEED = 10_000  # tuning streams are drawn from seeds disjoint from the reported ones
EAGER_STREAMS = 50  # streams (split between sources) on which A's re-adaptation is also timed in PyTorch eager
KEEP_VISITS, KEEP_EARLY, KEEP_WIDTH, KEEP_QUERIES = 5, 2, 5, 10  # visits of SHOTS per digit, early ones, digits
# per update, held-out queries per digit
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
        self.name = self.label(lam, alpha)

    @staticmethod
    def label(lam: float, alpha: float) -> str:
        """The design's name in tables, with its tuned (lambda, alpha_m)."""
        return f"B: fast/slow consolidation (lambda {lam:g}, alpha_m {alpha:g})"

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


@dataclass(frozen=True)
class Source:
    """One artifact, the PyTorch inner loop it was exported from, and the streams drawn for it (``streams(count,
    seed)``); FSDD has one per held-out speaker."""

    name: str
    learner: rt.Learner
    inner: InnerLoop
    streams: Callable[[int, int], Iterator[Stream]]


@dataclass
class Runs:
    """Per stream, after each arrival: accuracy, update latency (ms) and, for A's first streams, PyTorch eager's."""

    accuracy: list[list[float]] = field(default_factory=list)
    latency: list[list[float]] = field(default_factory=list)
    eager: list[list[float]] = field(default_factory=list)

    def add(self, result: tuple[list[float], list[float], list[float]]) -> None:
        self.accuracy.append(result[0])
        self.latency.append(result[1])
        if result[2]:
            self.eager.append(result[2])

    def final(self) -> np.ndarray:
        """Accuracy on every class after the last arrival, one value per stream."""
        return np.array([a[-1] for a in self.accuracy])


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


def mean_ci(fractions, digits: int = 1) -> str:
    """Percent, mean ± the half-width of its 95% confidence interval (gaps between designs: ``digits`` 2)."""
    result = EvalResult("accuracy", 100 * np.asarray(fractions, dtype=np.float64))
    return f"{result.mean:.{digits}f} ± {result.ci95:.{digits}f}"


def shares(total: int, parts: int) -> int:
    """Streams per source so that ``parts`` sources give at least ``total`` in all."""
    return math.ceil(total / parts)


def tune(sources: list[Source], count: int) -> tuple[tuple[float, float], dict]:
    """B's (lambda, alpha_m) with the best mean final accuracy on ``count`` tuning streams split between sources."""
    tuning = [(s, list(s.streams(shares(count, len(sources)), TUNING_SEED))) for s in sources]
    scores = {(lam, alpha): float(np.mean([run(Consolidation(s.learner, s.inner, lam, alpha), stream)[0][-1]
                                           for s, streams in tuning for stream in streams]))
              for lam, alpha in GRID}
    return max(scores, key=scores.get), scores


def check_fidelity(source: Source, atol: float = 1e-4) -> tuple[float, rt.AdaptedLearner]:
    """The largest difference between A's probabilities after a whole (tuning-seeded) stream and PyTorch's on the
    same stored support set (so the checkpoint is the one the artifact was exported from), and A's learner after
    it; AssertionError above ``atol``."""
    learner, inner = source.learner, source.inner
    stream = next(source.streams(1, TUNING_SEED - 1))
    adapted = learner.adapt(stream[0].x, stream[0].y)
    for arrival in stream[1:]:
        adapted = adapted.update(arrival.x, arrival.y)
    queries = np.concatenate([a.query_x for a in stream])
    class_mask = (torch.arange(inner.ways) < len(adapted.classes)).float()
    expected = inner.probabilities(torch.from_numpy(adapted._support.x), torch.from_numpy(adapted._support.y),
                                   torch.from_numpy(queries), class_mask)[:, : len(adapted.classes)].numpy()
    difference = float(np.abs(adapted.predict_proba(queries) - expected).max())
    assert difference <= atol, f"{source.name}: the artifact differs from its checkpoint by {difference:.1e}"
    return difference, adapted


@dataclass(frozen=True)
class StateBytes:
    """What each design keeps between updates, in bytes."""

    a_saved: int  # A's state file (``save``) after a whole stream
    a_bound: int  # A's largest possible state: the adapted head plus max_ways x max_shots examples
    b: int  # B's adapted head and slow head (float32), no examples

    def line(self, stream: str) -> str:
        """One sentence comparing the three sizes."""
        return (f"State kept between updates: A {_kb(self.a_saved)} (its saved state after {stream}; at most "
                f"{_kb(self.a_bound)} with max_ways x max_shots stored examples), B {_kb(self.b)} (its adapted and "
                "slow heads, no examples).")


def _kb(n: int) -> str:
    return f"{n / 1024:.0f} KB"


def state_bytes(adapted: rt.AdaptedLearner) -> StateBytes:
    """A's measured state size after a stream, its bound, and B's (two heads of the same shapes)."""
    learner = adapted._learner
    head = sum(a.nbytes for a in adapted._params.values())
    examples = learner.max_ways * learner.max_shots
    with tempfile.TemporaryDirectory() as folder:
        saved = adapted.save(Path(folder) / "state.npz").stat().st_size
    return StateBytes(saved, head + examples * (4 * math.prod(learner.input_shape) + 8), 2 * head)


@dataclass
class Measured:
    """One kind of stream measured: per design and source the runs, and what the verdict draws on."""

    title: str
    count: int
    designs: list[str]
    runs: dict[str, dict[str, Runs]]  # design -> source -> runs
    difference: float
    scores: dict
    state: StateBytes

    def pooled(self, design: str) -> Runs:
        pooled = Runs()
        for runs in self.runs[design].values():
            pooled.accuracy += runs.accuracy
            pooled.latency += runs.latency
            pooled.eager += runs.eager
        return pooled

    def final_gap(self) -> np.ndarray:
        """A's final accuracy minus B's, per stream (the same streams)."""
        a, b = self.designs
        return self.pooled(a).final() - self.pooled(b).final()


def measure(title: str, sources: list[Source], count: int, tuning: int) -> Measured:
    """Both designs on at least ``count`` streams split evenly between ``sources`` (B tuned first)."""
    checked = [check_fidelity(s) for s in sources]
    (lam, alpha), scores = tune(sources, tuning)
    per, eager_per = shares(count, len(sources)), shares(EAGER_STREAMS, len(sources))
    names = [Replay.name, Consolidation.label(lam, alpha)]
    runs = {name: {s.name: Runs() for s in sources} for name in names}
    done = 0
    for source in sources:
        designs = [Replay(source.learner), Consolidation(source.learner, source.inner, lam, alpha)]
        for i, stream in enumerate(source.streams(per, 0)):
            for d in designs:
                timed = source.inner if isinstance(d, Replay) and i < eager_per else None
                runs[d.name][source.name].add(run(d, stream, timed))
            done += 1
            if done % 50 == 0:
                print(f"{title}: {done}/{per * len(sources)} streams", flush=True)
    measured = Measured(title, per * len(sources), names, runs, max(d for d, _ in checked), scores,
                        state_bytes(checked[0][1]))
    print(f"{title}: final accuracy " + "; ".join(f"{n}: {mean_ci(measured.pooled(n).final())}" for n in names)
          + f"; A - B {mean_ci(measured.final_gap(), 2)} points", flush=True)
    return measured


def section(measured: Measured, describe: str, labels: list[str]) -> list[str]:
    """The section lines for one kind of stream: accuracy and latency after each arrival, per design."""
    lines = [f"### {measured.title}", "", describe, "",
             f"Accuracy (%, mean ± 95% CI over {measured.count} streams) on held-out examples of every class seen "
             "so far, after each arrival:", ""]
    pooled = {name: measured.pooled(name) for name in measured.designs}
    rows = [[name] + [mean_ci([a[k] for a in runs.accuracy]) for k in range(len(labels))]
            for name, runs in pooled.items()]
    lines += markdown_table(["design"] + labels, rows)
    eager = pooled[Replay.name].eager
    lines += ["", f"Update latency (ms, median over streams; arrival 1 is `adapt`). A runs in onnxruntime (1 thread); "
              f"B's update runs in PyTorch eager (1 thread), so the last row (A's re-adaptation computed by PyTorch "
              f"eager, {len(eager)} streams) is the baseline that B's row compares with:", ""]
    rows = [[name] + [f"{np.median([t[k] for t in runs.latency]):.1f}" for k in range(len(labels))]
            for name, runs in pooled.items()]
    rows.append(["A's re-adaptation in PyTorch eager"] + [f"{np.median([e[k] for e in eager]):.1f}"
                                                           for k in range(len(labels))])
    lines += markdown_table(["design"] + labels, rows)
    grid = ", ".join(f"({lam:g}, {alpha:g}): {100 * s:.1f}" for (lam, alpha), s in measured.scores.items())
    lines += ["", f"A after a whole stream agrees with PyTorch on the same stored support set within "
              f"{measured.difference:.0e} (probabilities). B's (lambda, alpha_m) chosen by final accuracy (%) on "
              f"tuning streams drawn from other seeds: {grid}. A's final accuracy minus B's on the same streams: "
              f"{mean_ci(measured.final_gap(), 2)} points. {measured.state.line('a stream')}", ""]
    return lines


def per_source(measured: Measured, heading: str) -> list[str]:
    """Final accuracy per source (FSDD: per held-out speaker) for both designs, and the mean over sources."""
    a, b = measured.designs
    sources = list(measured.runs[a])
    rows = []
    for name in sources:
        finals = measured.runs[a][name].final(), measured.runs[b][name].final()
        rows.append([name, str(len(finals[0])), mean_ci(finals[0]), mean_ci(finals[1]),
                     mean_ci(finals[0] - finals[1], 2)])
    means = [[100 * measured.runs[d][name].final().mean() for name in sources] for d in (a, b)]
    rows.append([f"mean over the {len(sources)}", str(sum(int(r[1]) for r in rows)), f"{np.mean(means[0]):.1f}",
                 f"{np.mean(means[1]):.1f}", f"{np.mean(means[0]) - np.mean(means[1]):.2f}"])
    return [f"Final accuracy (%, all ten digits, mean ± 95% CI over each {heading}'s streams) with each {heading} "
            f"held out in turn; A - B is the difference on the same streams (points):", ""] + markdown_table(
        [heading, "streams", "A", "B", "A - B"], rows) + [""]


def verdict(measured: list[Measured]) -> list[str]:
    """Which design ships, from the measured accuracy gap, update latency and state size."""
    facts, b_ahead = [], False
    for m in measured:
        gap = EvalResult("accuracy", 100 * m.final_gap())
        if gap.mean - gap.ci95 > 0:
            reading = "A ahead"
        elif gap.mean + gap.ci95 < 0:
            reading, b_ahead = "B ahead", True
        else:
            reading = "no significant difference"
        a, b = (m.pooled(name) for name in m.designs)
        last = [np.median([t[-1] for t in runs]) for runs in (a.latency, a.eager, b.latency)]
        facts.append(f"- {m.title.split(':')[0]}: final accuracy A - B = {gap.mean:.2f} ± {gap.ci95:.2f} points "
                     f"({reading}); the last update A {last[0]:.1f} ms in onnxruntime ({last[1]:.1f} ms in PyTorch "
                     f"eager), B {last[2]:.1f} ms in PyTorch eager; state A {_kb(m.state.a_saved)} after a stream "
                     f"(at most {_kb(m.state.a_bound)}), B {_kb(m.state.b)}.")
    lines = ["### Which design ships", "", "On the same streams:", ""] + facts + [""]
    if b_ahead:
        lines.append("B is ahead on at least one kind of stream: shipping A needs revisiting (B is not exported).")
    else:
        lines.append("A is shipped and B is not exported: B is nowhere significantly more accurate; A's update is the "
                     "artifact's own `adapt` graph on the stored set (nothing new to export and verify, the same "
                     "fidelity to PyTorch as `adapt`), where B would need a graph of its own for the elastic loss and "
                     "the slow-weight step. What A pays is memory: it keeps up to max_ways x max_shots examples where "
                     "B keeps none, and each update re-adapts on the whole stored set, so its cost grows with the "
                     "classes seen where B's steps see only the new examples.")
    return lines + [""]


@dataclass(frozen=True)
class KeepKind:
    """Streams for the keep policies: per digit, the examples its early visits draw from and its late ones'
    (the same arrays: no drift), and how to describe them."""

    title: str
    early: list[np.ndarray]
    late: list[np.ndarray]
    describe: str


def mnist_kinds() -> list[KeepKind]:
    """Digits revisited: from the training set in a random order; and with the writers changing, early visits
    from the first 5,000 test images (NIST's SD-3 writers, Census employees) and late ones from the last 5,000
    (SD-1, high-school students), as MNIST's documentation splits them."""
    def digits(split: str, part: slice) -> list[np.ndarray]:
        data = load_mnist(find_data_dir(), split)
        images = (data.images[part].astype(np.float32) / 255)[:, None]
        return [images[data.labels[part] == d] for d in range(10)]

    train = digits("train", slice(None))
    return [KeepKind("stationary", train, train, "digits from the 60,000 training images, in a random order"),
            KeepKind("writers change", digits("test", slice(0, 5000)), digits("test", slice(5000, None)),
                     "early visits (the first two) by the writers of the test set's first 5,000 images (NIST SD-3, "
                     "Census employees), later ones by those of its last 5,000 (SD-1, students); queries half "
                     "from each")]


def keep_streams(kind: KeepKind, count: int, seed: int) -> Iterator[tuple[Stream, Stream, np.ndarray, np.ndarray,
                                                                           np.ndarray]]:
    """Each digit offered SHOTS examples on each of KEEP_VISITS visits (the first KEEP_EARLY early, the rest late)
    and KEEP_QUERIES held-out queries (half early, half late); a visit brings every digit once, in a random order,
    KEEP_WIDTH digits per update. Yields the arrivals before any digit has more than max_shots examples (both
    policies keep everything there), those after, the queries, their digits, and whether each is late."""
    early_n, late_n, half = KEEP_EARLY * SHOTS, (KEEP_VISITS - KEEP_EARLY) * SHOTS, KEEP_QUERIES // 2
    for s in range(count):
        rng = np.random.default_rng(seed + s)
        offered, queries = [], []
        for d in range(10):
            if kind.early is kind.late:
                picks = kind.early[d][rng.choice(len(kind.early[d]), early_n + late_n + KEEP_QUERIES, False)]
                offered.append(picks[: early_n + late_n])
                queries.append(picks[early_n + late_n:])
            else:
                e = kind.early[d][rng.choice(len(kind.early[d]), early_n + half, False)]
                late = kind.late[d][rng.choice(len(kind.late[d]), late_n + half, False)]
                offered.append(np.concatenate([e[:early_n], late[:late_n]]))
                queries.append(np.concatenate([e[early_n:], late[late_n:]]))
        arrivals = []
        for visit in range(KEEP_VISITS):
            turn = rng.permutation(10)
            for group in (turn[i: i + KEEP_WIDTH] for i in range(0, 10, KEEP_WIDTH)):
                x = np.concatenate([offered[d][visit * SHOTS: (visit + 1) * SHOTS] for d in group])
                arrivals.append(Arrival(x, [int(d) for d in group for _ in range(SHOTS)], x[:0], np.zeros(0)))
        split = 2 * math.ceil(10 / KEEP_WIDTH)  # two visits: max_shots (10) examples of every digit
        late = np.tile(np.arange(KEEP_QUERIES) >= half, 10)
        yield arrivals[:split], arrivals[split:], np.concatenate(queries), np.repeat(np.arange(10), KEEP_QUERIES), late


@dataclass
class KeepRuns:
    """Per policy and stream: final accuracy on all queries, on the early and the late writers' (drift only), and
    the mean update time (ms); per stream, the share of reservoir's stored examples not among newest's."""

    accuracy: dict[str, list[float]] = field(default_factory=dict)
    early: dict[str, list[float]] = field(default_factory=dict)
    late: dict[str, list[float]] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)
    differ: list[float] = field(default_factory=list)


def keep_run(learner: rt.Learner, stream: tuple, runs: KeepRuns) -> None:
    """One stream: its shared prefix once, then the rest with each keep policy; records into ``runs``."""
    prefix, rest, query_x, query_y, late = stream
    shared = learner.adapt(prefix[0].x, prefix[0].y)
    for arrival in prefix[1:]:
        shared = shared.update(arrival.x, arrival.y)
    kept = {}
    for policy in KEEP_POLICIES:
        state = shared
        start = time.perf_counter()
        for arrival in rest:
            state = state.update(arrival.x, arrival.y, keep=policy)
        runs.latency.setdefault(policy, []).append(1000 * (time.perf_counter() - start) / len(rest))
        right = np.array(state.predict(query_x)) == query_y
        runs.accuracy.setdefault(policy, []).append(float(right.mean()))
        runs.early.setdefault(policy, []).append(float(right[~late].mean()))
        runs.late.setdefault(policy, []).append(float(right[late].mean()))
        kept[policy] = {row.tobytes() for row in state._support.x}
    runs.differ.append(len(kept["reservoir"] - kept["newest"]) / len(kept["newest"]))


def measure_keep(kind: KeepKind, count: int, learner: rt.Learner) -> KeepRuns:
    """Both keep policies on ``count`` streams of ``kind``."""
    runs = KeepRuns()
    for i, stream in enumerate(keep_streams(kind, count, 0)):
        keep_run(learner, stream, runs)
        if (i + 1) % 100 == 0:
            print(f"keep policies, {kind.title}: {i + 1}/{count} streams; " + "; ".join(
                f"{p} {mean_ci(a)}" for p, a in runs.accuracy.items()), flush=True)
    return runs


def keep_gap(runs: KeepRuns, which: str = "accuracy") -> str:
    """Reservoir minus newest on the same streams (points, ± 95% CI) and what it reads as."""
    table = getattr(runs, which)
    gap = np.array(table["reservoir"]) - np.array(table["newest"])
    result = EvalResult("gap", 100 * gap)
    reading = ("reservoir ahead" if result.mean - result.ci95 > 0 else "newest ahead"
               if result.mean + result.ci95 < 0 else "no significant difference")
    return f"{mean_ci(gap, 2)} ({reading})"


def keep_section(measured: list[tuple[KeepKind, KeepRuns]]) -> list[str]:
    """The keep-policy comparison: per kind of stream, final accuracy per policy and the paired gaps."""
    count = len(measured[0][1].differ)
    lines = ["## Which examples `update` keeps: newest against reservoir", "",
             f"The shipped artifact (`models/omniglot-conv4`, max_ways 20, max_shots 10; trained on Omniglot only, "
             f"so MNIST digits are new to it) on {count} streams of each kind. Each stream offers every digit 0-9 "
             f"{SHOTS} examples on each of {KEEP_VISITS} visits ({KEEP_VISITS * SHOTS} in all, of which 10 can be "
             f"kept); a visit brings every digit once, in a random order, {KEEP_WIDTH} digits per update. "
             "`keep=\"newest\"` keeps each digit's last 10, `keep=\"reservoir\"` a uniform sample of all it was "
             "offered. Both run on the same streams from the same learner after the second visit (identical up to "
             f"there: nothing is dropped before). Then {KEEP_QUERIES} held-out queries per digit.", ""]
    for kind, runs in measured:
        drift = kind.early is not kind.late
        rows = [[p, mean_ci(runs.accuracy[p])] + ([mean_ci(runs.early[p]), mean_ci(runs.late[p])] if drift else [])
                + [f"{np.median(runs.latency[p]):.1f}"] for p in runs.accuracy]
        halves = " (all queries, the early writers' and the late writers')" if drift else ""
        lines += [f"### {kind.title}: {kind.describe}", "",
                  f"Final accuracy (%, mean ± 95% CI over streams){halves} and the median update time after the "
                  "second visit (ms, onnxruntime, 1 thread):", ""]
        lines += markdown_table(["keep", "all queries"] + (["early writers", "late writers"] if drift else [])
                                + ["update ms"], rows)
        gaps = (f"all queries {keep_gap(runs)}; early writers' {keep_gap(runs, 'early')}; late writers' "
                f"{keep_gap(runs, 'late')}") if drift else keep_gap(runs)
        lines += ["", f"Reservoir minus newest on the same streams (points): {gaps}. "
                  f"{100 * np.mean(runs.differ):.0f}% of reservoir's stored examples are not among newest's.", ""]
    lines += ["With digits in a random order the two stored sets are samples of the same distribution, so a gap "
              "there can only be chance; when the writers change, newest forgets the early writers once their "
              "examples are no longer the last 10, and reservoir keeps them in proportion to what they offered. "
              f"`update` keeps with `{DEFAULT_KEEP}` by default (`keep=` picks; see docs/deploy.md, \"Runtime\").", ""]
    return lines


def keep_report(streams: int, no_report: bool) -> None:
    """Measure the keep policies on both kinds of MNIST stream and write (or print) their section."""
    started = time.perf_counter()
    learner = rt.load(PRETRAINED, threads=1)
    measured = [(kind, measure_keep(kind, streams, learner)) for kind in mnist_kinds()]
    body = "\n".join(keep_section(measured)) + f"\nWall time: {(time.perf_counter() - started) / 60:.1f} min.\n"
    if no_report:
        print(body)
    else:
        write_section("continual-device-keep", body,
                      f"python benchmarks/continual_device.py --only keep --streams {streams}")


def audio_artifact(digits: SpokenDigits, speaker: str, epochs: int) -> Path:
    """A log-mel Conv4 pretrained on every speaker but ``speaker``, exported head-only (built once into runs/)."""
    folder = RUNS / f"fsdd-without-{speaker}"
    if (folder / "artifact" / "manifest.json").exists():
        trained = json.loads((folder / "checkpoint" / "config.json").read_text())["pretraining"]["epochs"]
        if trained != epochs:
            raise SystemExit(f"{folder} was pretrained {trained} epochs, not {epochs}: remove it to rebuild it")
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


def omniglot_source(twin: Path) -> tuple[Source, int]:
    """The validation twin exported head-only (once, into runs/), with streams of validation classes; and how many
    validation classes there are."""
    artifact = RUNS / "omniglot-twin-head"
    if not (artifact / "manifest.json").exists():
        export_artifact(twin, artifact, executorch=False, scope="head", max_ways=20, max_shots=10)
    _, validation = omniglot_splits(load_omniglot(omniglot_path(find_data_dir())))
    images = validation.images.numpy()
    return Source("omniglot", rt.load(artifact, threads=1), reference(artifact, twin),
                  lambda n, s: omniglot_streams(images, n, s)), validation.n_classes


def speaker_sources(digits: SpokenDigits, speakers: list[str], epochs: int) -> list[Source]:
    """One audio model per held-out speaker (pretrained on the others), with streams of that speaker's digits."""
    sources = []
    for speaker in speakers:
        artifact = audio_artifact(digits, speaker, epochs)
        features = digits.features[digits.speakers.index(speaker)]
        inner = reference(artifact, artifact.parent / "checkpoint")
        sources.append(Source(speaker, rt.load(artifact, threads=1), inner,
                              lambda n, s, f=features: speaker_streams(f, n, s)))
    return sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000,
                        help="reported streams per kind (FSDD: split evenly between the held-out speakers)")
    parser.add_argument("--tuning-streams", type=int, default=30,
                        help="streams B's lambda and alpha_m are tuned on (per kind, split like --streams)")
    parser.add_argument("--twin", type=Path, default=TWIN, help="checkpoint of the Omniglot validation twin")
    parser.add_argument("--speaker", default=None,
                        help="hold out only this FSDD speaker (default: every speaker in turn)")
    parser.add_argument("--epochs", type=int, default=10, help="pretraining epochs of each audio model")
    parser.add_argument("--only", choices=("omniglot", "fsdd", "keep"), default=None,
                        help="one kind of stream (keep: the keep policies, written to their own section)")
    parser.add_argument("--no-report", action="store_true",
                        help="print the section instead of writing it into docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only in (None, "keep"):
        keep_report(args.streams, args.no_report)
    if args.only == "keep":
        return
    body = ["## Continual personalisation on the device", "", __doc__.split("\n\n")[1], "",
            __doc__.split("\n\n")[2].replace("\n", " "), ""]
    measured = []
    if args.only in (None, "omniglot"):
        source, classes = omniglot_source(args.twin)
        measured.append(measure("Omniglot: 20 validation classes, 4 at a time", [source], args.streams,
                                args.tuning_streams))
        body += section(measured[-1], f"{classes} validation classes; 5 drawings per class arrive, the other 15 are "
                        "queries. Artifact: the validation twin exported head-only, max_ways 20, max_shots 10.",
                        [f"{4 * (k + 1)} classes" for k in range(5)])
    if args.only in (None, "fsdd"):
        digits = cached_features(find_data_dir())
        if args.speaker is not None and args.speaker not in digits.speakers:
            parser.error(f"--speaker must be one of {', '.join(digits.speakers)}")
        speakers = [args.speaker] if args.speaker else list(digits.speakers)
        sources = speaker_sources(digits, speakers, args.epochs)
        who = f"a new speaker ({args.speaker})" if args.speaker else f"each of the {len(speakers)} speakers held out"
        measured.append(measure(f"FSDD: {who}, one digit at a time", sources, args.streams, args.tuning_streams))
        body += section(measured[-1], f"A Conv4 (32 filters) on 28x28 log-mel images "
                        f"(`edgeadapt.runtime.audio.log_mel`, 0.75 s), pretrained {args.epochs} epochs as a 10-digit "
                        f"classifier on the other {len(digits.speakers) - 1} speakers, one model per held-out speaker "
                        "(cached in runs/continual-device/fsdd-without-NAME), exported head-only with prototypes "
                        "(head_scale 0.05, 3 steps of 0.1); 5 takes per digit arrive, the other 45 are queries. The "
                        "tables pool the streams of every held-out speaker.",
                        ["2 digits"] + [f"{k} digits" for k in range(3, 11)])
        if len(sources) > 1:
            body += per_source(measured[-1], "speaker")
    body += verdict(measured)
    if args.no_report:
        print("\n".join(body))
    else:
        command = (f"python benchmarks/continual_device.py --streams {args.streams} "
                   f"--tuning-streams {args.tuning_streams}")
        command += f" --speaker {args.speaker}" if args.speaker else ""
        command += f" --only {args.only}" if args.only else ""
        write_section("continual-device", "\n".join(body), command)


if __name__ == "__main__":
    main()
