#!/bin/bash
# Needs the validation twin's pretraining run: bash models/reproduce_omniglot_conv4.sh train. Then:
#   bash benchmarks/finetune_ablation.sh && python benchmarks/omniglot_recipes.py
#   python benchmarks/omniglot_meta_learners.py
# Ablation rows: MAML (the recipe shipped before), Reptile and FOMAML meta-fine-tuning of the validation twin's
# pretraining, as MAML's (last block + head, prototype head at scale 0.35, 3 steps of 0.1, meta-batch 4, 500
# iterations). Reptile trains on 5 shots: at
# 1 shot the support set is its own prototypes, the support loss is ~0 and Reptile's direction vanishes. Then the
# Reptile paper's mini-batch inner steps (5 steps of 20 examples; also at head scales 0.1 and 0.03, see
# benchmarks/reptile_direction.py) and FOMAML with Adam-preconditioned inner rates.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
p=runs/omniglot-pretrain-train/checkpoint
resume() { [ -e "$1/checkpoint/state.json" ] && echo --resume || true; }
common="--dataset omniglot --split train --init $p --head-init prototypes --head-scale 0.35 --scope last_block
    --ways 20 --min-ways 5 --query-shots 5 --inner-steps 3 --inner-lr 0.1 --meta-batch 4 --iterations 500
    --checkpoint-every 50 --seed 0 --eval-tasks 0 --no-progress"
r=runs/omniglot-maml-train
edgeadapt train $common --algorithm maml --shots 1 --outer-lr 0.0001 --out $r $(resume $r)
r=runs/omniglot-reptile-train
edgeadapt train $common --algorithm reptile --shots 5 --outer-lr 1.0 --out $r $(resume $r)
r=runs/omniglot-fomaml-train
edgeadapt train $common --algorithm fomaml --shots 1 --outer-lr 0.0001 --out $r $(resume $r)
r=runs/omniglot-reptile-minibatch-train
edgeadapt train $common --algorithm reptile --shots 5 --inner-steps 5 --inner-batch 20 --outer-lr 1.0 --out $r $(resume $r)
r=runs/omniglot-reptile-minibatch-s01-train  # a lower head scale: a larger support loss, a longer direction
edgeadapt train $common --algorithm reptile --shots 5 --inner-steps 5 --inner-batch 20 --head-scale 0.1 \
    --outer-lr 1.0 --out $r $(resume $r)
r=runs/omniglot-fomaml-adam-train
edgeadapt train $common --algorithm fomaml --shots 1 --inner-rates adam --outer-lr 0.0001 --out $r $(resume $r)

# Reptile as shipped (models/reproduce_omniglot_conv4.sh: head scale 0.03, mini-batches, 2,000 iterations, frozen
# blocks cached) and its neighbours: 500 iterations at head scales 0.03 and 0.02, tasks within one alphabet, 4,000
# iterations
reptile="$common --algorithm reptile --shots 5 --inner-steps 5 --inner-batch 20 --outer-lr 1.0 --cache-frozen"
r=runs/omniglot-reptile-minibatch-s003-train
edgeadapt train $reptile --head-scale 0.03 --out $r $(resume $r)
r=runs/omniglot-reptile-s002-train
edgeadapt train $reptile --head-scale 0.02 --out $r $(resume $r)
r=runs/omniglot-reptile-within-train
edgeadapt train $reptile --head-scale 0.03 --iterations 2000 --within-alphabet --out $r $(resume $r)
r=runs/omniglot-reptile-4000-train
edgeadapt train $reptile --head-scale 0.03 --iterations 4000 --out $r $(resume $r)
