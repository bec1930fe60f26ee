#!/usr/bin/env bash
# Rebuild models/omniglot-conv4 from the Omniglot background set:
#   1. pretrain Conv4 (64 filters, batch norm, ELU, features L2-normalised to norm 10) as a cosine classifier
#      with an additive margin of 0.25 over every class x 4 rotations (24 epochs, affine distortions);
#   2. meta-fine-tune it with MAML (second order) on 5..20-way 1-shot tasks through the inner loop the device runs
#      (prototype head, scale 0.35, last block + head adapt, 3 SGD steps at 0.1), 500 meta-iterations;
#   3. export the artifact (head-only adaptation, 2..20 ways, 1..10 shots; ONNX, .ort and, with executorch
#      installed, .pte) and keep the checkpoint beside it.
#   bash models/reproduce_omniglot_conv4.sh [SPLIT] [--device cuda]   # SPLIT=train: the validation twin (24 alphabets)
# REPRO_EPOCHS and REPRO_ITERATIONS (default 24 and 500) shorten the two stages for a smoke test
# (tests/test_documented_commands.py); the shipped model is made with the defaults.
# Data: $EDGEADAPT_DATA (a folder holding omniglot/images_background.zip). On a 2-core CPU the validation twin
# trained in 31 minutes (pretraining 26.5, fine-tuning 4.4; docs/benchmarks.md) and all 30 alphabets in 48 (pretraining
# 40, fine-tuning 7.4), the two side by side on one thread each; the export, ExecuTorch program included, took 5 more.
set -euo pipefail
split="${1:-all}"
shift || true
pretrained="runs/omniglot-pretrain-$split"
run="runs/omniglot-conv4-$split"
epochs="${REPRO_EPOCHS:-24}"
iterations="${REPRO_ITERATIONS:-500}"
resume() { [ -e "$1/checkpoint/state.json" ] && echo --resume || true; }
edgeadapt pretrain --dataset omniglot --split "$split" --epochs "$epochs" --augmentation affine --hidden 64 \
    --norm batch --activation elu --classifier cosine --margin 0.25 --feature-norm 10 --seed 0 --eval-every 237 --eval-tasks 1000 \
    --out "$pretrained" $(resume "$pretrained") "$@"
edgeadapt train --dataset omniglot --split "$split" --init "$pretrained/checkpoint" --algorithm maml \
    --head-init prototypes --head-scale 0.35 --scope last_block --ways 20 --min-ways 5 --shots 1 --query-shots 5 \
    --inner-steps 3 --inner-lr 0.1 --outer-lr 0.0001 --meta-batch 4 --iterations "$iterations" --checkpoint-every 50 \
    --seed 0 --eval-tasks 0 --out "$run" $(resume "$run") "$@"
if [ "$split" = all ]; then
    edgeadapt export "$run/checkpoint" -o models/omniglot-conv4 --scope head --max-ways 20 --max-shots 10 --force
    cp -r "$run/checkpoint" models/omniglot-conv4/checkpoint
fi
