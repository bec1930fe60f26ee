"""Keyword spotting on Speech Commands: words never trained on, adapted from raw 16 kHz clips through the runtime.

Split (fixed): the model trains on the 10 command words (yes, no, up, down, left, right, on, off, stop, go: their
200 clips of ``speech_commands/v0.02-test`` and 10 of ``v0.01``, 2,100 clips), and is measured on the 12 words it
never trained on (zero..nine, bed, dog: the 10 clips of each in ``v0.01``). Why: the commands are the only words
with many clips and speakers (about 110 speakers each), what a classifier needs to learn features from; 10 clips
are too few to train on but enough for 5-shot tasks with 5 queries. The 8 further words of v0.01 are held out of
this project entirely, and FSDD's digits are validation words here, so FSDD is never trained on.
:func:`build_folder` links both into one folder of WAV clips, one sub-folder per word, which ``edgeadapt
pretrain --data`` / ``train --data`` read with ``--val-classes`` naming the 12 validation words.

Tasks: 5-way 1-shot and 5-shot over the validation words, 5 queries per class (a word has 10 clips), the same tasks
for every method. A Speech Commands file is ``<speaker>_nohash_<n>.wav``; a task's speakers are split in two, the
support drawn from one side and the queries from the other, so that no query speaker is in the support
(:func:`speaker_disjoint_task` tries random splits; the share of tasks where one was found is reported, the others
are drawn without the constraint). Second check, FSDD (``fsdd/recordings``, 8 kHz, 6 speakers x 10 digits x 50
takes): 5-way tasks over its digits, support and queries drawn the same way from disjoint sets of its speakers;
the runtime resamples the 8 kHz clips to 16 kHz itself.

Methods, each scored on the same tasks (accuracy as mean and 95% CI over tasks, non-transductive):

- ``shipped``: ``models/speech-commands-kws`` through ``edgeadapt.runtime`` from raw int16 samples
  (``prepare(clips, manifest, sample_rate=...)``, then ``adapt`` / ``predict``); ``shipped, head-only
  adaptation``: its checkpoint exported adapting the head alone.
- ``pretrained, shipped adaptation``: the checkpoint it was meta-fine-tuned from, exported with the shipped inner
  loop (scope, head, scale, steps, rate); ``pretrained, prototype head, no step``: the same as its readout.
- ``imprinting`` and ``simpleshot``: the frozen embedding (``features``, L2-normalised; SimpleShot subtracts the
  training words' mean embedding first) of the pretrained and of the shipped checkpoint, nearest class mean.

    python benchmarks/keyword_spotting.py            # writes its section of docs/benchmarks.md
    python benchmarks/keyword_spotting.py --quick    # 50 tasks per cell, shipped model only; prints only

The last line printed is JSON: {"results": {"Speech Commands": {"5w1s": {"methods": {METHOD: [mean, ci95]},
"speaker_disjoint": SHARE}, ...}, "FSDD": {...}}, "tasks": N, "queries": 5}.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch

import edgeadapt.runtime as rt
from caltech101 import data_folder, mean_ci, nearest_mean
from edgeadapt.export import export_artifact
from edgeadapt.runtime.preprocess import prepare
from edgeadapt.sdk import load_checkpoint
from edgeadapt.sdk.datasets.fsdd import NAME as FSDD_NAME, SAMPLE_RATE as FSDD_RATE
from report import markdown_table, write_section

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "kws"
TRAIN_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
VALIDATION_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "bed", "dog")
SOURCES = ("v0.02-test", "v0.01")
CELLS = ((5, 1), (5, 5))
QUERIES = 5  # per class: a validation word has 10 clips, so 5-shot tasks leave 5
MODEL = ROOT / "models" / "speech-commands-kws"
PRETRAINED = RUNS / "pretrain" / "checkpoint"  # as models/reproduce_speech_commands_kws.sh makes it


@dataclass(frozen=True)
class Task:
    """Rows of a :class:`Clips` forming one task, their labels (0..ways-1), and whether no query speaker is in the
    support."""

    support: np.ndarray
    support_y: np.ndarray
    query: np.ndarray
    query_y: np.ndarray
    disjoint: bool


def speaker(name: str) -> str:
    """The speaker of a clip linked by :func:`build_folder` (``<source>-<speaker>_nohash_<n>.wav``) or of an
    original Speech Commands file."""
    return name.rsplit("-", 1)[-1].split("_nohash_")[0]


def build_folder(data: Path, out: Path = RUNS) -> tuple[Path, Path]:
    """``out/words/<word>/<source>-<file>.wav``: symlinks to every clip of the 22 words, and
    ``out/validation-words.txt`` naming the 12 validation words; returns the two paths."""
    words = out / "words"
    for source in SOURCES:
        for word in TRAIN_WORDS + VALIDATION_WORDS:
            folder = data / "speech_commands" / source / word
            if not folder.is_dir():
                continue
            (words / word).mkdir(parents=True, exist_ok=True)
            for clip in sorted(folder.glob("*.wav")):
                link = words / word / f"{source}-{clip.name}"
                if not link.is_symlink():
                    link.symlink_to(clip.resolve())
    names = out / "validation-words.txt"
    names.write_text("\n".join(VALIDATION_WORDS) + "\n")
    return words, names


@dataclass(frozen=True)
class Clips:
    """Raw mono clips of some words: ``samples[i]`` (int16) is word ``labels[i]`` said by ``speakers[i]``."""

    samples: list[np.ndarray]
    labels: np.ndarray
    speakers: np.ndarray
    words: tuple[str, ...]
    rate: int


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A WAV file's int16 samples (channels averaged) and its sample rate."""
    samples, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    return samples.mean(axis=1).astype(np.int16) if samples.shape[1] > 1 else samples[:, 0], rate


def folder_clips(words_folder: Path, words: tuple[str, ...]) -> Clips:
    """Every clip of ``words`` under ``words_folder`` (as :func:`build_folder` links them), in file-name order."""
    samples, labels, speakers, rates = [], [], [], set()
    for label, word in enumerate(words):
        for path in sorted((words_folder / word).glob("*.wav")):
            clip, rate = read_wav(path)
            samples.append(clip)
            labels.append(label)
            speakers.append(speaker(path.name))
            rates.add(rate)
    (rate,) = rates
    return Clips(samples, np.array(labels), np.array(speakers), words, rate)


def fsdd_clips(data: Path) -> Clips:
    """Every FSDD recording (``fsdd/recordings/<digit>_<speaker>_<take>.wav``, 8 kHz): the digits as the validation
    words ``zero``..``nine``."""
    samples, labels, speakers = [], [], []
    for path in sorted((data / "fsdd" / "recordings").glob("*.wav")):
        match = FSDD_NAME.fullmatch(path.name)
        if match:
            clip, rate = read_wav(path)
            if rate != FSDD_RATE:
                raise ValueError(f"{path} is {rate} Hz, FSDD's clips {FSDD_RATE}")
            samples.append(clip)
            labels.append(int(match[1]))
            speakers.append(match[2])
    return Clips(samples, np.array(labels), np.array(speakers), VALIDATION_WORDS[:10], FSDD_RATE)


def speaker_disjoint_task(clips: Clips, ways: int, shots: int, queries: int, rng: np.random.Generator,
                          tries: int = 4096) -> Task:
    """A ``ways``-way task over ``clips``'s words: ``shots`` support and ``queries`` query clips per word, the
    support from one side of a random split of the task's speakers and the queries from the other when one of
    ``tries`` random splits allows it (``Task.disjoint``), otherwise drawn without regard to speakers."""
    classes = rng.choice(len(clips.words), ways, replace=False)
    rows = [np.flatnonzero(clips.labels == c) for c in classes]
    speakers, index = np.unique(clips.speakers[np.concatenate(rows)], return_inverse=True)
    owner = np.split(index, np.cumsum([len(r) for r in rows])[:-1])  # each word's clips as speaker numbers
    sides = rng.random((tries, len(speakers))) < 0.5  # True: the support side
    enough = np.ones(tries, bool)
    for spoken in owner:
        in_support = sides @ np.bincount(spoken, minlength=len(speakers))
        enough &= (in_support >= shots) & (len(spoken) - in_support >= queries)
    found = bool(enough.any())
    side = sides[np.argmax(enough)] if found else None
    support, query = [], []
    for word_rows, spoken in zip(rows, owner):
        if found:
            ours = side[spoken]
            support.append(rng.choice(word_rows[ours], shots, replace=False))
            query.append(rng.choice(word_rows[~ours], queries, replace=False))
        else:
            picked = rng.choice(word_rows, shots + queries, replace=False)
            support.append(picked[:shots])
            query.append(picked[shots:])
    labels = np.arange(ways)
    return Task(np.concatenate(support), np.repeat(labels, shots), np.concatenate(query),
                np.repeat(labels, queries), found)


def draw_tasks(clips: Clips, ways: int, shots: int, tasks: int, seed: int) -> list[Task]:
    """``tasks`` speaker-disjoint tasks (where possible), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [speaker_disjoint_task(clips, ways, shots, QUERIES, rng) for _ in range(tasks)]


def runtime_scores(learner: rt.Learner, inputs: np.ndarray, tasks: list[Task]) -> np.ndarray:
    """Per-task accuracy of ``learner`` adapted on each task's support inputs (non-transductive: the queries are
    predicted after adaptation, never seen by it)."""
    scores = []
    for task in tasks:
        predicted = learner.adapt(inputs[task.support], task.support_y.tolist()).predict(inputs[task.query])
        scores.append(float(np.mean(np.asarray(predicted) == task.query_y)))
    return np.asarray(scores)


def embed(checkpoint: Path, inputs: np.ndarray) -> torch.Tensor:
    """The checkpoint's frozen embedding (``features``, eval mode) of model inputs."""
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        return model.features(torch.from_numpy(inputs))


def nearest_mean_scores(embeddings: torch.Tensor, tasks: list[Task], centre: torch.Tensor | None) -> np.ndarray:
    """Per-task accuracy of imprinting (the nearest normalised class mean), after subtracting ``centre`` first when
    given (SimpleShot)."""
    if centre is not None:
        embeddings = embeddings - centre
    scores = []
    for task in tasks:
        predicted = nearest_mean(embeddings[task.support], torch.from_numpy(task.support_y), embeddings[task.query],
                                 len(np.unique(task.support_y)))
        scores.append(float((predicted.numpy() == task.query_y).mean()))
    return np.asarray(scores)


def evaluate(artifacts: dict[str, Path], checkpoints: dict[str, Path], sets: dict[str, Clips], train: Clips,
             tasks: int) -> dict[str, dict[str, dict]]:
    """Every cell of every set of clips for every method, on the same tasks:
    ``{set: {"5w1s": {"methods": {method: (mean, ci95)}, "speaker_disjoint": share of tasks}}}``."""
    learners = {name: rt.load(path, threads=1) for name, path in artifacts.items()}
    manifest = next(iter(learners.values())).manifest
    if any(learner.manifest["input"] != manifest["input"] for learner in learners.values()):
        raise ValueError("the artifacts compared take different inputs")
    centres = {name: embed(path, prepare(train.samples, manifest, sample_rate=train.rate)).mean(0)
               for name, path in checkpoints.items()}
    results: dict[str, dict[str, dict]] = {}
    for set_name, clips in sets.items():
        inputs = prepare(clips.samples, manifest, sample_rate=clips.rate)
        embedded = {name: embed(path, inputs) for name, path in checkpoints.items()}
        results[set_name] = {}
        for ways, shots in CELLS:
            drawn = draw_tasks(clips, ways, shots, tasks, seed=1000 * ways + shots)
            row = {name: mean_ci(runtime_scores(learner, inputs, drawn)) for name, learner in learners.items()}
            for name, values in embedded.items():
                row[f"imprinting ({name})"] = mean_ci(nearest_mean_scores(values, drawn, None))
                row[f"simpleshot ({name})"] = mean_ci(nearest_mean_scores(values, drawn, centres[name]))
            disjoint = float(np.mean([task.disjoint for task in drawn]))
            results[set_name][f"{ways}w{shots}s"] = {"methods": row, "speaker_disjoint": disjoint}
            print(set_name, f"{ways}-way {shots}-shot", f"speaker-disjoint {100 * disjoint:.0f}%",
                  {m: f"{a:.1f} ± {c:.1f}" for m, (a, c) in row.items()}, flush=True)
    return results


def comparison_artifacts(shipped: Path, pretrained: Path | None, out: Path = RUNS) -> dict[str, Path]:
    """The shipped artifact, its checkpoint exported with head-only adaptation (when it adapts more), and the
    pretrained checkpoint (when given) exported twice: adapting as the shipped artifact does (its scope, head,
    scale, steps and rate), and as its readout (a prototype head, no step); the exports are written under ``out``."""
    settings = json.loads((shipped / "manifest.json").read_text())
    sizes = {"max_ways": settings["max_ways"], "max_shots": settings["max_shots"], "executorch": False,
             "overwrite": True}
    loop = {key: settings[key] for key in ("scope", "head_init", "head_scale", "inner_steps", "inner_lr")}
    artifacts = {"shipped": shipped}
    if loop["scope"] != "head":
        artifacts["shipped, head-only adaptation"] = export_artifact(shipped / "checkpoint", out / "shipped-head",
                                                                     **sizes, **{**loop, "scope": "head"})
    if pretrained is not None:
        artifacts["pretrained, shipped adaptation"] = export_artifact(pretrained, out / "pretrained-artifact",
                                                                      **sizes, **loop)
        artifacts["pretrained, prototype head, no step"] = export_artifact(pretrained, out / "pretrained-readout",
                                                                           **sizes)
    return artifacts


def write(results: dict[str, dict[str, dict]], tasks: int, shipped: Path) -> None:
    """This benchmark's section of docs/benchmarks.md."""
    loop = json.loads((shipped / "manifest.json").read_text())
    size = sum(f.stat().st_size for f in shipped.iterdir() if f.is_file())
    body = ["## Keyword spotting: Speech Commands words never trained on", "",
            f"`{shipped.relative_to(ROOT) if shipped.is_relative_to(ROOT) else shipped}` ({size / 1e6:.1f} MB without "
            f"its checkpoint; Conv4 on 40x40 log-mel features of 1 s at 16 kHz, {loop['scope']} adaptation, "
            f"{loop['inner_steps']} SGD steps at {loop['inner_lr']:g}, prototype head scale {loop['head_scale']:g}), "
            "trained on the 10 command words only, adapted from raw int16 clips through `edgeadapt.runtime` "
            "(`prepare(clips, manifest, sample_rate=...)`, `adapt`, `predict`) to words it never trained on: "
            "Speech Commands' zero..nine, bed and dog (v0.01, 10 clips each, 16 kHz), and FSDD's ten digits (6 "
            "speakers, 8 kHz clips that the runtime resamples to 16 kHz). "
            f"{tasks:,} tasks per cell, {QUERIES} queries per class, the same tasks for every method, the support and "
            "the queries spoken by disjoint sets of speakers wherever a random split of the task's speakers allowed "
            "it (the share of such tasks is given); accuracy (%) as mean ± 95% CI over tasks, non-transductive. "
            "Rows: the shipped artifact; its checkpoint exported with head-only adaptation; the pretrained "
            "checkpoint before meta-fine-tuning, exported with the shipped inner loop and as a prototype head with "
            "no step; `imprinting` (L2-normalised frozen embedding, nearest normalised class mean) and `simpleshot` "
            "(the training words' mean embedding subtracted before normalising) on the embedding of the pretrained "
            "and of the shipped checkpoint. The model is made by `bash models/reproduce_speech_commands_kws.sh`; "
            "how its recipe was chosen on these words is in models/README.md.", ""]
    for set_name, cells in results.items():
        methods = list(next(iter(cells.values()))["methods"])
        rows = [[m, *[f"{cells[c]['methods'][m][0]:.1f} ± {cells[c]['methods'][m][1]:.1f}" for c in cells]]
                for m in methods]
        rows.append(["speaker-disjoint tasks", *[f"{100 * cells[c]['speaker_disjoint']:.0f}%" for c in cells]])
        header = ["method", *[c.replace("w", "-way ").replace("s", "-shot") for c in cells]]
        body += [f"**{set_name}**", "", *markdown_table(header, rows), ""]
    write_section("keyword-spotting", "\n".join(body), "python benchmarks/keyword_spotting.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data folder holding speech_commands/ and fsdd/")
    parser.add_argument("--model", type=Path, default=MODEL, help="the artifact measured (its checkpoint/ beside it)")
    parser.add_argument("--pretrained", type=Path, default=PRETRAINED, help="the checkpoint it was meta-fine-tuned "
                        "from (its baselines are left out when absent)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per cell (default: 1000; docs only at 1000+)")
    parser.add_argument("--quick", action="store_true", help="50 tasks per cell, the shipped model only (smoke test)")
    parser.add_argument("--build-only", action="store_true", help="only link the folder of words under runs/kws")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = data_folder(args.data)
    words, _ = build_folder(data)
    if args.build_only:
        return
    tasks = 50 if args.quick else args.tasks
    checkpoints = {"shipped": args.model / "checkpoint"}
    if (args.pretrained / "config.json").exists() and not args.quick:
        checkpoints["pretrained"] = args.pretrained
    pretrained = checkpoints.get("pretrained")
    artifacts = {"shipped": args.model} if args.quick else comparison_artifacts(args.model, pretrained)
    sets = {"Speech Commands": folder_clips(words, VALIDATION_WORDS)}
    if (data / "fsdd" / "recordings").is_dir():
        sets["FSDD"] = fsdd_clips(data)
    results = evaluate(artifacts, checkpoints, sets, folder_clips(words, TRAIN_WORDS), tasks)
    if tasks >= 1000:
        write(results, tasks, args.model)
    print(json.dumps({"results": results, "tasks": tasks, "queries": QUERIES}))


if __name__ == "__main__":
    main()
