"""The runtime's contract at scale: the property suite ``tests/test_runtime_contract.py`` run with many generated
cases per class of hostile input, and restore's memory on the attack the reliability review found.

1. The suite runs with ``--examples`` cases per property. Any raw exception, silently wrong result, lost state or
   restore over 2x the largest legitimate state's memory fails it, and then nothing is written.
2. Peak resident memory of ``restore`` in a fresh process (``ru_maxrss`` growth) for the shipped model's largest
   legitimate state and for a small file whose members are deflated with sizes that lie (it would inflate to
   ``--inflate-mb`` megabytes; before the bounded reader it was inflated in full, then accepted).

Writes the "runtime-contract" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from report import markdown_table, write_section

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "tests" / "test_runtime_contract.py"
SHIPPED = ROOT / "models" / "omniglot-conv4"

MAKE_STATES = r"""
import sys, zipfile
sys.path.insert(0, sys.argv[1])
import numpy as np
import edgeadapt.runtime as rt
from hostile import DEFLATED, Entry, zip_bytes

learner = rt.load(sys.argv[2])
x = np.random.default_rng(0).random((learner.max_ways * learner.max_shots, *learner.input_shape), dtype=np.float32)
labels = ["\U0001F600" * 253 + f"{i // learner.max_shots:03d}" for i in range(len(x))]
largest = learner.adapt(x, labels).save(sys.argv[3] + "/largest.npz")
with zipfile.ZipFile(largest) as z:
    members = {name: z.read(name) for name in z.namelist()}
inflate = int(sys.argv[4]) << 20
open(sys.argv[3] + "/bomb.npz", "wb").write(zip_bytes(
    [Entry(name, raw, DEFLATED, inflate=inflate if name == "support/x.npy" else 0) for name, raw in members.items()]))
"""
RESTORE = r"""
import json, os, resource, sys, tracemalloc, zipfile
import edgeadapt.runtime as rt

learner = rt.load(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
try:
    if sys.argv[3] == "zipfile":  # what restore did before the bounded reader
        with zipfile.ZipFile(sys.argv[2]) as z:
            members = {name: z.read(name) for name in z.namelist()}
        outcome = f"read, {sum(map(len, members.values()))} bytes"
    else:
        learner.restore(sys.argv[2])
        outcome = "restored"
except rt.EdgeAdaptError as e:
    outcome = f"{type(e).__name__}"
traced = tracemalloc.get_traced_memory()[1]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"file_bytes": os.path.getsize(sys.argv[2]), "growth_kib": after - before, "traced_bytes": traced,
                  "outcome": outcome}))
"""


def run_suite(examples: int) -> dict:
    """The suite's tally (fails loudly if any property fails)."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "tally.json"
        env = {**os.environ, "EDGEADAPT_CONTRACT_EXAMPLES": str(examples), "EDGEADAPT_CONTRACT_REPORT": str(report)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SUITE),
                               "-W", "ignore::hypothesis.errors.HypothesisWarning"], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the contract suite failed; nothing written:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}")
        return json.loads(report.read_text())


def probe_memory(inflate_mb: int) -> dict:
    """Resident-memory growth of one read of each state, each in a fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-c", MAKE_STATES, str(ROOT / "tests"), str(SHIPPED), folder,
                        str(inflate_mb)], check=True, capture_output=True)
        runs = {"largest": ("largest.npz", "restore"), "bomb": ("bomb.npz", "restore"),
                "bomb via zipfile": ("bomb.npz", "zipfile")}
        return {kind: json.loads(subprocess.run(
            [sys.executable, "-c", RESTORE, str(SHIPPED), f"{folder}/{name}", how], check=True, capture_output=True,
            text=True).stdout.strip().splitlines()[-1]) for kind, (name, how) in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="generated cases per property")
    parser.add_argument("--inflate-mb", type=int, default=1024, help="what the hostile state would inflate to")
    parser.add_argument("--no-report", action="store_true", help="print, do not write docs/benchmarks.md")
    args = parser.parse_args()
    tally = run_suite(args.examples)
    memory = probe_memory(args.inflate_mb)
    print(json.dumps({"tally": tally, "memory": memory}))
    if not args.no_report:
        write_section("runtime-contract", body(tally, memory, args.inflate_mb),
                      f"python benchmarks/runtime_contract.py --examples {args.examples}")


def body(tally: dict, memory: dict, inflate_mb: int) -> str:
    """The section's Markdown."""
    classes: dict[str, dict[str, int]] = {}
    for key, count in tally["cases"].items():
        name, outcome = key.rsplit("/", 1)
        classes.setdefault(name, {"refused": 0, "accepted": 0})[outcome] = count
    rows = [[name, str(c["refused"] + c["accepted"]), str(c["refused"]), str(c["accepted"]), "0", "0"]
            for name, c in classes.items()]
    total = sum(c["refused"] + c["accepted"] for c in classes.values())
    largest, bomb, before = memory["largest"], memory["bomb"], memory["bomb via zipfile"]
    return "\n".join([
        "## The runtime's contract under hostile input",
        "",
        f"`tests/test_runtime_contract.py` at {tally['examples']} generated cases per property, {total} calls in all "
        "(each generated case makes one to three calls: save, restore, load, adapt, update; Hypothesis stops early "
        "where a property's inputs form a finite set it has exhausted: the manifest and metadata texts, the "
        "operating-system failures). A call must end in an "
        "`EdgeAdaptError` (refused) or in a result checked to be correct (accepted: a restored state predicts "
        "exactly as the saved one, a label set survives save and restore with its types, a failed save leaves the "
        "previous file byte for byte); anything else fails the run, so both right-hand columns are zero by "
        "construction of a passing run.",
        "",
        *markdown_table(["class of input", "calls", "refused (EdgeAdaptError)", "accepted and checked",
                         "raw exceptions", "silently wrong"], rows),
        "",
        f"Restore's peak traced memory (tracemalloc) over every hostile state: {tally['peak_memory_ratio']:.2f}x the "
        f"shipped model's largest legitimate state (limit {tally['memory_limit_ratio']:.0f}x).",
        "",
        "One read in a fresh process after loading the shipped model (peak traced memory; growth of resident "
        "memory, `ru_maxrss`):",
        "",
        *markdown_table(["state", "file", "outcome", "peak traced", "resident growth"], [
            [name, f"{m['file_bytes'] / 1024:.0f} KiB", m["outcome"], f"{m['traced_bytes'] / 1024:.0f} KiB",
             f"{m['growth_kib'] / 1024:.1f} MiB"] for name, m in (
                ("the largest legitimate state", largest),
                (f"its support set deflated with true sizes and checksum but {inflate_mb} MiB of zeros more inside "
                 "(the review's attack)", bomb),
                ("the same file read member by member with `zipfile`, as restore did before", before))]),
        "",
        "Compressed members are refused unread; `zipfile` inflates a member in full before keeping the length it "
        "declares, which is how the attack's state used to be accepted.",
    ])


if __name__ == "__main__":
    main()
