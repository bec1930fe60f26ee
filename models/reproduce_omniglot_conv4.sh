#!/usr/bin/env bash
# Rebuild models/omniglot-conv4 from the Omniglot background set:
#   1. pretrain Conv4 (64 filters, batch norm, ELU, features L2-normalised to norm 10) as a cosine classifier
#      with an additive margin of 0.25 over every class x 4 rotations (24 epochs, affine distortions);
#   2. meta-fine-tune it with Reptile (first order, the inner loop the device runs) on 5..20-way 5-shot tasks:
#      prototype head at scale 0.03, last block + head adapt by 5 SGD steps of 0.1 on mini-batches of 20, outer
#      step 1.0 annealed to 0, 2,000 meta-iterations, the three frozen blocks computed once per example;
#   3. export the artifact (head-only adaptation by 3 SGD steps of 0.1, 2..20 ways, 1..10 shots; ONNX, .ort and,
#      with executorch installed, .pte), the checkpoint kept beside it.
#   bash models/reproduce_omniglot_conv4.sh [SPLIT] [--device cuda]   # SPLIT=train: the validation twin (24 alphabets)
# The validation twin goes to runs/omniglot-conv4-train (its artifact in artifact/), all 30 alphabets to
# models/omniglot-conv4. Each stage's wall-clock goes to runs/omniglot-stages-SPLIT.json
# (benchmarks/omniglot_recipe_cost.py reads it; docs/benchmarks.md "Omniglot recipe: minutes per stage").
# REPRO_EPOCHS and REPRO_ITERATIONS (default 24 and 2000) shorten the two stages for a smoke test
# (tests/test_documented_commands.py); the shipped model is made with the defaults.
# Data: $EDGEADAPT_DATA (a folder holding omniglot/images_background.zip).
set -euo pipefail
split="${1:-all}"
shift || true
pretrained="runs/omniglot-pretrain-$split"
run="runs/omniglot-conv4-$split"
artifact="$run/artifact"
[ "$split" = all ] && artifact=models/omniglot-conv4
epochs="${REPRO_EPOCHS:-24}"
iterations="${REPRO_ITERATIONS:-2000}"
resume() { [ -e "$1/checkpoint/state.json" ] && echo --resume || true; }
load="$(cut -d' ' -f1-3 /proc/loadavg)"
start=$SECONDS
edgeadapt pretrain --dataset omniglot --split "$split" --epochs "$epochs" --augmentation affine --hidden 64 \
    --norm batch --activation elu --classifier cosine --margin 0.25 --feature-norm 10 --seed 0 --eval-every 237 --eval-tasks 1000 \
    --no-progress --out "$pretrained" $(resume "$pretrained") "$@"
pretraining=$((SECONDS - start))
edgeadapt train --dataset omniglot --split "$split" --init "$pretrained/checkpoint" --algorithm reptile \
    --head-init prototypes --head-scale 0.03 --scope last_block --cache-frozen --ways 20 --min-ways 5 --shots 5 \
    --query-shots 5 --inner-steps 5 --inner-batch 20 --inner-lr 0.1 --outer-lr 1.0 --meta-batch 4 \
    --iterations "$iterations" --checkpoint-every 100 --seed 0 --eval-tasks 0 --no-progress --out "$run" \
    $(resume "$run") "$@"
meta_fine_tuning=$((SECONDS - start - pretraining))
edgeadapt export "$run/checkpoint" -o "$artifact" --scope head --inner-steps 3 --max-ways 20 --max-shots 10 --force
export_seconds=$((SECONDS - start - pretraining - meta_fine_tuning))
[ "$split" = all ] && rm -rf "$artifact/checkpoint" && cp -r "$run/checkpoint" "$artifact/checkpoint"
printf '{"split": "%s", "threads": %s, "load_before": "%s", "pretraining": %s, "meta_fine_tuning": %s, "export": %s, "total": %s}\n' \
    "$split" "$(nproc)" "$load" "$pretraining" "$meta_fine_tuning" "$export_seconds" "$((SECONDS - start))" \
    > "runs/omniglot-stages-$split.json"
