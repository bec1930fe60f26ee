#!/usr/bin/env bash
# Rebuild models/speech-commands-kws from the Speech Commands clips of the data folder:
#   0. link the clips of the 22 words into runs/kws/words/<word>/ and name the 12 validation words (zero..nine, bed,
#      dog) in runs/kws/validation-words.txt (benchmarks/keyword_spotting.py --build-only): the model trains on the
#      10 command words only, 2,100 clips;
#   1. pretrain Conv4 (64 filters, batch norm, ELU, features L2-normalised to norm 10) on their 40x40 log-mel
#      features as a cosine classifier with an additive margin of 0.25 (EPOCHS epochs, batches of 64, time-shift
#      augmentation);
#   2. meta-fine-tune it with Reptile (meta step 1.0 annealed to 0, 5 tasks a meta-batch, ITERATIONS meta-iterations)
#      on 5-way 5-shot tasks of the training words through the inner loop the device runs: a prototype head at scale
#      0.03, the last block and the head adapting, 5 SGD steps at 0.1;
#   3. export the artifact with that inner loop (2..12 ways, 1..10 shots; ONNX and .ort, no ExecuTorch program) and
#      keep the checkpoint beside it (its weights and config; the training state stays in the run).
#   bash models/reproduce_speech_commands_kws.sh [--device cuda]
# REPRO_EPOCHS and REPRO_ITERATIONS shorten the two stages for a smoke test, REPRO_RUNS (default runs/kws) and
# REPRO_OUT (default models/speech-commands-kws) move the runs and the artifact; the shipped model is made with the
# defaults. Rerunning resumes the runs where they stopped. Data: $EDGEADAPT_DATA (a folder holding speech_commands/).
# Measured: benchmarks/keyword_spotting.py (docs/benchmarks.md, "Keyword spotting").
set -euo pipefail
runs="${REPRO_RUNS:-runs/kws}"
out="${REPRO_OUT:-models/speech-commands-kws}"
epochs="${REPRO_EPOCHS:-30}"
iterations="${REPRO_ITERATIONS:-300}"
pretrained="$runs/pretrain"
run="$runs/meta"
resume() { [ -e "$1/checkpoint/state.json" ] && echo --resume || true; }
python benchmarks/keyword_spotting.py --build-only
words=(--data runs/kws/words --val-classes runs/kws/validation-words.txt)
edgeadapt pretrain "${words[@]}" --epochs "$epochs" --batch-size 64 --norm batch --classifier cosine --margin 0.25 \
    --feature-norm 10 --seed 0 --eval-tasks 1000 --out "$pretrained" $(resume "$pretrained") "$@"
edgeadapt train "${words[@]}" --init "$pretrained/checkpoint" --algorithm reptile --scope last_block \
    --head-init prototypes --head-scale 0.03 --ways 5 --shots 5 --query-shots 5 --inner-steps 5 --inner-lr 0.1 \
    --outer-lr 1.0 --meta-batch 5 --iterations "$iterations" --checkpoint-every 50 --seed 0 --eval-tasks 1000 \
    --out "$run" $(resume "$run") "$@"
edgeadapt export "$run/checkpoint" -o "$out" --max-ways 12 --max-shots 10 --no-executorch --force
python -c "import sys; from edgeadapt.sdk import load_checkpoint, save_checkpoint
model, config = load_checkpoint(sys.argv[1]); save_checkpoint(sys.argv[2], model, config)" \
    "$run/checkpoint" "$out/checkpoint"
