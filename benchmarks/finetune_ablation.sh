#!/bin/bash
# Needs the validation twin's pretraining run: bash models/reproduce_omniglot_conv4.sh train. Then:
#   bash benchmarks/finetune_ablation.sh && python benchmarks/omniglot_recipes.py
# Ablation rows: Reptile and MAML meta-fine-tuning of the cosine validation twin, as FOMAML's (last block + head,
# prototype head at scale 0.35, 3 steps of 0.1, meta-batch 4, 500 iterations). Reptile trains on 5 shots: at
# 1 shot the support set is its own prototypes, the support loss is ~0 and Reptile's direction vanishes.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
p=runs/omniglot-pretrain-train/checkpoint
resume() { [ -e "$1/checkpoint/state.json" ] && echo --resume || true; }
common="--dataset omniglot --split train --init $p --head-init prototypes --head-scale 0.35 --scope last_block
    --ways 20 --min-ways 5 --query-shots 5 --inner-steps 3 --inner-lr 0.1 --meta-batch 4 --iterations 500
    --checkpoint-every 50 --seed 0 --eval-tasks 0 --no-progress"
r=runs/omniglot-reptile-train
edgeadapt train $common --algorithm reptile --shots 5 --outer-lr 1.0 --out $r $(resume $r)
r=runs/omniglot-maml-train
edgeadapt train $common --algorithm maml --shots 1 --outer-lr 0.0001 --out $r $(resume $r)

