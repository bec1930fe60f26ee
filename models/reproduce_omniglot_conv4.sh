#!/usr/bin/env bash
# Rebuild models/omniglot-conv4 from the Omniglot background set: meta-train on all 30 alphabets,
# export the artifact (ONNX, .ort and, with executorch installed, .pte) and keep the checkpoint in it.
#   bash models/reproduce_omniglot_conv4.sh [SPLIT]     # SPLIT=train: the validation twin (24 alphabets)
# Data: $EDGEADAPT_DATA (a folder holding omniglot/images_background.zip). About 2 h on 2 CPU cores;
# add --device cuda to the train command on a GPU.
set -euo pipefail
split="${1:-all}"
run="runs/omniglot-conv4-$split"
edgeadapt train --dataset omniglot --algorithm fomaml --split "$split" --ways 20 --min-ways 2 \
    --shots 5 --min-shots 1 --query-shots 5 --meta-batch 5 --iterations 800 --activation elu --seed 0 \
    --eval-tasks 0 --out "$run"
if [ "$split" = all ]; then
    edgeadapt export "$run/checkpoint" -o models/omniglot-conv4 --max-shots 5
    cp -r "$run/checkpoint" models/omniglot-conv4/checkpoint
fi
