"""Every command of README.md, models/README.md and docs/*.md works as written.

Each fenced ``bash`` / ``python`` / ``js`` block (and each whole command written in the prose, :data:`INLINE`) is
split into commands, and every command must match one rule of :data:`RULES`: it is run here in a scratch folder,
in document order, with short settings where a flag allows (:data:`SHORT`), or the rule names the test or CI step
that runs it. A command that no rule accounts for fails :func:`test_every_documented_command_is_accounted_for`,
so a new documented command cannot go untested. The runs that need Omniglot use a small copy of the background
set (every alphabet, four characters each) and are marked slow.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from helpers import photo_folder

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "models/README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))
LANGUAGES = ("bash", "python", "js")
# Whole commands written in the prose rather than in a block.
INLINE = {
    "README.md": ("edgeadapt continual --dataset rotated-mnist --method reptile-ewc --out runs/continual",
                  "python examples/personalise_omniglot.py", "python examples/samples/make_samples.py",
                  "bash models/reproduce_omniglot_conv4.sh"),
}
# Short settings: per subcommand, flags whose value is replaced (or that are added) so a run takes seconds.
SHORT = {
    "pretrain": {"--epochs": "1", "--eval-tasks": "20"},
    "train": {"--iterations": "2", "--eval-tasks": "20"},
    "eval": {"--tasks": "20"},
    "export": {"--no-executorch": None},
    "continual": {"--steps-per-task": "5", "--train-size": "300", "--eval-size": "200", "--validation-size": "300"},
}
SHORT_PYTHON = {r"epochs=\d+": "epochs=1", r"num_iterations=\d+": "num_iterations=2"}
# Placeholders of synopsis lines, and what stands for them (a run made first, an artifact folder).
PLACEHOLDERS = {"RUN/checkpoint": "runs/docs-run/checkpoint", "ARTIFACT": "docs-artifact"}
PLACEHOLDER_RUN = "edgeadapt train --dataset glyphs --ways 4 --hidden 8 --iterations 2 --eval-tasks 0 --out runs/docs-run"
COMMAND_TIMEOUT_S = 900


@dataclass(frozen=True)
class Rule:
    """How the commands matching ``pattern`` are checked: ``run`` here (``slow``: in the slow tests; ``native``:
    with Node.js, in the native tests), or by the test or CI step ``elsewhere`` names, which must exist:
    ``evidence`` is a file and text that it holds. Patterns see a shell command's text, or ``python:`` / ``js:``
    and a block's."""

    pattern: str
    run: bool = False
    slow: bool = False
    native: bool = False
    elsewhere: str = ""
    evidence: tuple[str, str] | None = None


RULES = (
    Rule(r"^python3 -m venv \.venv$", elsewhere="the fresh-venv install of .ci/run", evidence=(".ci/run", "-m venv")),
    Rule(r"^\.venv/bin/pip install -e '\.\[train,dev\]'$", elsewhere=".ci/run installs the train and dev extras",
         evidence=(".ci/run", "pip install -q -e '.[train,")),
    Rule(r"^\.venv/bin/python -m pytest$", elsewhere="this test suite; .ci/run runs the README's test line",
         evidence=(".ci/run", ".venv/bin/python -m pytest\n")),
    Rule(r"^pip install '\./\[runtime\]'$", elsewhere=".ci/run's torch-free runtime venv installs exactly this",
         evidence=(".ci/run", "pip\" install -q './[runtime]'")),
    Rule(r"^(\.venv/bin/)?edgeadapt (pretrain|train|eval|continual) .*--dataset (omniglot|rotated-mnist)",
         run=True, slow=True),
    Rule(r"^edgeadapt continual --method reptile --search", run=True, slow=True),
    Rule(r"^(\.venv/bin/)?edgeadapt (pretrain|train|eval|export) .*(my-photos|photos-model)", run=True),
    Rule(r"^python examples/personalise_photos\.py ", run=True),
    Rule(r"^(\.venv/bin/)?edgeadapt (train|export) ", run=True),
    Rule(r"^OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m edgeadapt\.cli ", run=True, slow=True),
    Rule(r"^openssl (genpkey|pkey) ", run=True),
    Rule(r"^python examples/samples/make_samples\.py$", run=True),
    Rule(r"^python examples/personalise_omniglot\.py$", run=True, slow=True),
    Rule(r"^bash models/reproduce_omniglot_conv4\.sh$", run=True, slow=True),
    Rule(r"^python:.*\b(pretrain|meta_train)\(", run=True, slow=True),
    Rule(r"^python:", run=True),
    Rule(r"^\(cd examples/web && npm ci && npm run build\)$|^cd examples/web && npm ci|^python3 (examples/web/)?serve\.py",
         elsewhere="the browser test serves the built page and drives it (pytest -m browser in .ci/run)",
         evidence=("tests/test_web_demo.py", "serve.py")),
    Rule(r"^cd examples/node && npm ci$", elsewhere=".ci/run installs the Node.js runner's packages",
         evidence=(".ci/run", "(cd examples/node && npm ci")),
    Rule(r"^node run\.mjs ", run=True, native=True),
    Rule(r"^js:", elsewhere="examples/node/run.mjs makes the same Learner calls; tests/test_node_runner.py runs it",
         evidence=("examples/node/run.mjs", "Learner.load(")),
    Rule(r"^bash examples/node/check_arm\.sh$",
         elsewhere="not in CI: it needs qemu-user-static and several minutes; it runs tests/test_node_runner.py "
                   "under qemu-aarch64 and is checked here for syntax only",
         evidence=("examples/node/check_arm.sh", "test_node_runner.py")),
)


@dataclass(frozen=True)
class Command:
    """One documented command: where it is written, its text, and its language (a non-shell block is one command)."""

    doc: str
    text: str
    language: str

    def rule(self) -> Rule | None:
        """The first rule whose pattern matches, or None."""
        key = self.text if self.language == "bash" else f"{self.language}:{self.text}"
        return next((r for r in RULES if re.search(r.pattern, key, re.S)), None)


def shell_commands(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments dropped, ``&&`` chains split (a
    parenthesised subshell, and a line that starts by changing folder, stay whole)."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s+)#.*$", "", line).strip()
        if not line:
            continue
        parts = [line] if line.startswith(("(", "cd ")) else [p.strip() for p in line.split("&&")]
        if line.startswith("(") and ") && " in line:
            head, tail = line.split(") && ", 1)
            parts = [head + ")", *(p.strip() for p in tail.split("&&"))]
        commands += [re.sub(r"\s+", " ", p) for p in parts]
    return commands


def documented_commands(doc: str) -> list[Command]:
    """Every command of ``doc``, in document order (inline commands last)."""
    text = (ROOT / doc).read_text()
    found = []
    for language, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if language == "bash":
            found += [Command(doc, c, "bash") for c in shell_commands(body)]
        elif language in LANGUAGES:
            found.append(Command(doc, body, language))
    for inline in INLINE.get(doc, ()):
        assert f"`{inline}`" in text, f"{doc} no longer writes `{inline}`: update INLINE"
        found.append(Command(doc, inline, "bash"))
    return found


def all_commands() -> list[Command]:
    return [c for doc in DOCS for c in documented_commands(doc)]


def test_every_documented_command_is_accounted_for():
    commands = all_commands()
    assert len(commands) > 20, "the documents' command blocks were not found"
    unaccounted = [f"{c.doc}: {c.text[:80]!r}" for c in commands if c.rule() is None]
    assert not unaccounted, "documented commands no rule of RULES runs or assigns:\n" + "\n".join(unaccounted)
    for rule in {c.rule() for c in commands}:  # each test or CI step named still exists
        if rule.evidence:
            path, needle = rule.evidence
            assert needle in (ROOT / path).read_text(), f"{rule.elsewhere}: {path} does not hold {needle!r}"


def test_check_arm_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "examples/node/check_arm.sh")]).returncode == 0


def test_committed_samples_equal_a_fresh_build(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "examples/samples/make_samples.py"), "--out", str(tmp_path)],
                   check=True, timeout=COMMAND_TIMEOUT_S)
    for made in sorted(tmp_path.iterdir()):
        assert made.read_bytes() == (ROOT / "examples/samples" / made.name).read_bytes(), made.name


def shorten(command: str) -> str:
    """``command`` with the short settings of its edgeadapt subcommand, placeholders filled, venv paths local."""
    command = command.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    match = re.search(r"(?:edgeadapt|edgeadapt\.cli) (pretrain|train|eval|export|continual)\b", command)
    if not match:
        return command
    words = shlex.split(command)
    for flag, value in SHORT[match.group(1)].items():
        if flag not in words:
            words += [flag] if value is None else [flag, value]
        elif value is not None:  # never longer than written (an --eval-tasks 0 stays 0)
            index = words.index(flag) + 1
            words[index] = str(min(int(words[index]), int(value)))
    if "--search" in words:
        words[words.index("--search") + 1] = "2"
    return shlex.join(words)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """A data folder whose omniglot/images_background.zip keeps four characters of every background alphabet,
    and whose mnist/ is the real one (linked)."""
    from edgeadapt.sdk.datasets import DatasetError, find_data_dir

    try:
        real = find_data_dir()
    except DatasetError as e:
        pytest.skip(f"no data folder: {e}")
    folder = tmp_path_factory.mktemp("data")
    (folder / "omniglot").mkdir()
    with zipfile.ZipFile(real / "omniglot" / "images_background.zip") as source, \
            zipfile.ZipFile(folder / "omniglot" / "images_background.zip", "w") as small:
        for name in source.namelist():
            parts = name.split("/")
            if len(parts) < 3 or re.fullmatch(r"character0[1-4]", parts[2]):
                small.writestr(source.getinfo(name), source.read(name))
    (folder / "mnist").symlink_to(real / "mnist")
    return folder


def workspace(tmp_path: Path, models: bool = True) -> Path:
    """A scratch folder that sees the repository's examples/ (and the shipped model, read-only use)."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "models").mkdir()
    if models:
        (tmp_path / "models" / "omniglot-conv4").symlink_to(ROOT / "models" / "omniglot-conv4")
    (tmp_path / "models" / "reproduce_omniglot_conv4.sh").symlink_to(ROOT / "models" / "reproduce_omniglot_conv4.sh")
    photo_folder(tmp_path / "my-photos", sizes=(11,) * 25)  # the README's own-data path: 20 classes train, 5 validate
    photo_folder(tmp_path / "new-photos", sizes=(7,) * 4)  # and classes it never saw
    return tmp_path


def run(command: Command, cwd: Path, data: Path | None) -> subprocess.CompletedProcess:
    """Run one documented command in ``cwd`` (short settings; Python blocks from a file)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "REPRO_EPOCHS": "1", "REPRO_ITERATIONS": "2", "EDGEADAPT_CACHE": str(cwd / ".cache")}
    if data is not None:
        env["EDGEADAPT_DATA"] = str(data)
    if command.language == "python":
        script = command.text
        for pattern, short in SHORT_PYTHON.items():
            script = re.sub(pattern, short, script)
        (cwd / "snippet.py").write_text(script)
        argv = [sys.executable, "snippet.py"]
    elif command.text.startswith("node "):
        argv = ["bash", "-c", command.text]
        cwd = ROOT / "examples" / "node"
    else:
        argv = ["bash", "-euo", "pipefail", "-c", shorten(command.text)]
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, f"{command.doc}: {command.text[:200]}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def runnable(doc: str, slow: bool, native: bool = False) -> list[Command]:
    """The commands of ``doc`` that are run here: the fast ones, or (``slow``) all of them; the Node.js ones
    (``native``); in document order."""
    return [c for c in documented_commands(doc)
            if (rule := c.rule()) and rule.run and rule.native == native and (slow or not rule.slow)]


def needs_placeholder_run(commands: list[Command]) -> bool:
    return any("RUN/checkpoint" in c.text for c in commands)


def run_document(doc: str, tmp_path: Path, data: Path | None) -> list[subprocess.CompletedProcess]:
    """Run ``doc``'s commands in one scratch folder, in order (so later commands find earlier runs); the
    reproduce script runs in its own test."""
    commands = [c for c in runnable(doc, slow=True) if "reproduce_omniglot" not in c.text]
    cwd = workspace(tmp_path)
    if needs_placeholder_run(commands):
        run(Command(doc, PLACEHOLDER_RUN, "bash"), cwd, data)
    return [run(c, cwd, data) for c in commands]


def _slow_if_any(doc: str):
    """``doc`` as a test parameter, marked slow when one of its commands is."""
    return pytest.param(doc, marks=[pytest.mark.slow] if any(c.rule().slow for c in runnable(doc, True)) else [])


@pytest.mark.parametrize("doc", [_slow_if_any(d) for d in DOCS if runnable(d, slow=True)])
def test_commands_of(doc, tmp_path, request):
    """Every command of ``doc`` that runs here succeeds, in document order (Omniglot and MNIST from a small copy
    of the data folder, which only the slow documents need)."""
    needs_data = any(c.rule().slow for c in runnable(doc, slow=True))
    assert run_document(doc, tmp_path, request.getfixturevalue("small_data") if needs_data else None)


def test_runtime_snippet_predicts_the_samples(tmp_path):
    """The README's runtime snippet prints the sample queries' classes: all of them right."""
    snippet = next(c for c in documented_commands("README.md") if c.language == "python" and "rt.load" in c.text)
    printed = run(snippet, workspace(tmp_path), None).stdout
    truth = json.loads((ROOT / "examples/samples/query_y.json").read_text())
    assert re.findall(r"'([^']+)'", printed) == truth, printed


@pytest.mark.slow
def test_reproduce_script_runs_end_to_end(tmp_path, small_data):
    """models/reproduce_omniglot_conv4.sh as written (REPRO_EPOCHS=1, REPRO_ITERATIONS=2) writes a Reptile
    meta-trained artifact and its checkpoint into models/omniglot-conv4 of the folder it runs in, and the
    wall-clock of each stage into runs/omniglot-stages-all.json."""
    command = next(c for c in documented_commands("docs/deploy.md") if "reproduce_omniglot" in c.text)
    cwd = workspace(tmp_path, models=False)
    run(command, cwd, small_data)
    made = cwd / "models" / "omniglot-conv4"
    assert (made / "manifest.json").is_file() and (made / "checkpoint" / "config.json").is_file()
    manifest = json.loads((made / "manifest.json").read_text())
    assert manifest["scope"] == "head" and manifest["max_ways"] == 20 and manifest["max_shots"] == 10
    assert manifest["training"]["algorithm"] == "reptile" and manifest["inner_steps"] == 3
    stages = json.loads((cwd / "runs" / "omniglot-stages-all.json").read_text())
    assert stages["total"] >= stages["pretraining"] + stages["meta_fine_tuning"] + stages["export"]


@pytest.mark.native
def test_node_command_of_the_deployment_guide():
    """docs/deploy.md's ``node run.mjs`` line, as written, on the shipped model and the sample inputs."""
    if not (ROOT / "examples/node/node_modules/onnxruntime-node").is_dir():
        pytest.skip("run `npm ci` in examples/node")
    (command,) = runnable("docs/deploy.md", slow=True, native=True)
    result = json.loads(run(command, ROOT, None).stdout)
    truth = json.loads((ROOT / "examples/samples/query_y.json").read_text())
    predicted = [result["classes"][int(np.argmax(row))] for row in result["probabilities"]]
    assert predicted == truth


def documented_row(method: str) -> dict[str, tuple[float, float]]:
    """docs/benchmarks.md's rotated-MNIST MLP row of ``method``: column -> (mean, sd) over seeds."""
    section = (ROOT / "docs/benchmarks.md").read_text().split("### MLP", 1)[1].split("### CNN", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| method | after 1"))
    row = next(line for line in section.splitlines() if line.startswith(f"| {method} |"))
    cells = dict(zip([c.strip() for c in header.split("|")[1:-1]], [c.strip() for c in row.split("|")[1:-1]]))
    return {k: tuple(float(x) for x in v.split("±")) for k, v in cells.items() if "±" in v}


@pytest.mark.slow
def test_readme_continual_command_matches_the_documented_table(tmp_path, small_data):
    """The README's ``edgeadapt continual`` command, unshortened (its defaults are the tuned recipe), lands within
    three standard deviations (over the table's seeds; at least 2 points) of every column of the table."""
    (command,) = [c for c in documented_commands("README.md") if c.text.startswith("edgeadapt continual")]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "EDGEADAPT_DATA": str(small_data)}
    subprocess.run(shlex.split(command.text) + ["--no-progress"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=COMMAND_TIMEOUT_S)
    summary = json.loads((tmp_path / "runs/continual/summary.json").read_text())
    ours = {f"after {i + 1}": 100 * row[0] for i, row in enumerate(summary["matrix"])}
    ours |= {"final average": 100 * summary["average"], "forgetting": 100 * summary["forgetting"]}
    table = documented_row(summary["method"])
    assert set(ours) <= set(table)
    for column, value in ours.items():
        mean, sd = table[column]
        assert abs(value - mean) <= max(3 * sd, 2.0), (column, value, mean, sd)
