"""The keyword-spotting benchmark: its speaker-disjoint tasks, and the shipped model adapting from raw clips of words
it never trained on (benchmarks/keyword_spotting.py --quick; skipped without the Speech Commands data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EDGEADAPT_DATA", ROOT.parent / "shared" / "data"))
MODEL = ROOT / "models" / "speech-commands-kws"
sys.path.insert(0, str(ROOT / "benchmarks"))

import keyword_spotting as kws  # noqa: E402


def clips(speakers_per_word: list[list[str]]) -> kws.Clips:
    """Silent clips, one per (word, speaker) pair given."""
    labels = [w for w, names in enumerate(speakers_per_word) for _ in names]
    names = [s for names in speakers_per_word for s in names]
    return kws.Clips([np.zeros(8, np.int16)] * len(names), np.array(labels), np.array(names),
                     tuple(f"w{w}" for w in range(len(speakers_per_word))), 16000)


def test_no_query_speaker_is_in_the_support_when_a_split_allows_it():
    shared = [f"s{i}" for i in range(6)]
    data = clips([shared + [f"w{w}-{i}" for i in range(4)] for w in range(6)])
    for task in kws.draw_tasks(data, ways=5, shots=5, tasks=50, seed=0):
        assert task.disjoint
        assert not set(data.speakers[task.support]) & set(data.speakers[task.query])
        words = data.labels[task.support]
        assert np.bincount(task.support_y).tolist() == [5] * 5
        assert all(len(set(words[task.support_y == k])) == 1 for k in range(5))
        assert len(task.query) == 5 * kws.QUERIES


def test_tasks_without_a_disjoint_split_are_still_drawn_and_marked():
    data = clips([[f"s{i}" for i in range(10)] for _ in range(5)])  # every speaker says every word once
    assert kws.draw_tasks(data, ways=5, shots=5, tasks=1, seed=0)[0].disjoint
    alone = clips([["s0"] * 10 for _ in range(5)])  # one speaker says everything
    task = kws.draw_tasks(alone, ways=5, shots=5, tasks=1, seed=0)[0]
    assert not task.disjoint and len(set(task.support) | set(task.query)) == 5 * (5 + kws.QUERIES)


def test_a_speaker_is_read_from_a_linked_or_original_file_name():
    assert kws.speaker("v0.02-test-0a7c2a8d_nohash_1.wav") == kws.speaker("0a7c2a8d_nohash_1.wav") == "0a7c2a8d"


@pytest.mark.skipif(not (DATA / "speech_commands").is_dir() or not (MODEL / "manifest.json").is_file(),
                    reason="Speech Commands data (set EDGEADAPT_DATA) or the shipped model not found")
def test_the_shipped_model_adapts_raw_clips_of_unseen_words_well_above_chance():
    """--quick (about 15 s): 50 tasks per cell through the runtime, from raw 16 kHz and 8 kHz clips; chance is 20%."""
    result = subprocess.run([sys.executable, "benchmarks/keyword_spotting.py", "--quick", "--data", str(DATA)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])["results"]
    floors = {"Speech Commands": 50.0, "FSDD": 40.0}  # FSDD is measured when the data folder holds it
    assert "Speech Commands" in results and set(results) <= set(floors)
    for name, cells in results.items():
        one, five = (cells[cell]["methods"]["shipped"][0] for cell in ("5w1s", "5w5s"))
        assert one > floors[name] and five > one, (name, one, five)
    assert results["Speech Commands"]["5w5s"]["speaker_disjoint"] == 1.0
