#!/usr/bin/env bash
# Rebuild models/caltech101-mobilenet from the Caltech-101 photos and the ImageNet MobileNet V1 that Coral's weight
# imprinting uses (int8 TFLite):
#   1. import the TFLite model's weights into the float backbone mobilenet_v1_imagenet (edgeadapt import-weights);
#   2. train its last block as a cosine classifier with an additive margin of 0.1 over the training classes
#      (features L2-normalised to norm 10, 12 epochs), the 12 blocks before it frozen and computed once per photo
#      and once per random crop-and-mirror of it (--scope last_block --views 2), batch norm's imported statistics
#      kept;
#   3. export the artifact: on the device a prototype head (scale 0.03) takes 5 SGD steps at 0.5 on the support set
#      (head only: meta-fine-tuning and adapting the last block measured no gain, models/README.md), and keep the
#      checkpoint beside it (its weights and config; the training state stays in the run).
#   bash models/reproduce_caltech101_mobilenet.sh [SPLIT]
# SPLIT=all (the default) trains on all 80 classes of the folder and writes models/caltech101-mobilenet; SPLIT=train
# holds out the 24 validation classes of the fixed split (--val-fraction 0.3 --split-seed 0) and writes
# runs/caltech101-mobilenet-train, the model whose accuracy docs/benchmarks.md reports.
# REPRO_EPOCHS (default 12) shortens training for a smoke test; REPRO_OUT replaces the artifact's folder.
# Data: $EDGEADAPT_DATA (a folder holding caltech101/images and pretrained/), else ../shared/data.
set -euo pipefail
split="${1:-all}"
data="${EDGEADAPT_DATA:-../shared/data}"
weights="runs/caltech101/imported.safetensors"
pretrained="runs/caltech101-pretrain-$split"
epochs="${REPRO_EPOCHS:-12}"
if [ "$split" = all ]; then default_out=models/caltech101-mobilenet; else default_out="runs/caltech101-mobilenet-$split"; fi
out="${REPRO_OUT:-$default_out}"
resume() { [ -e "$1/checkpoint/state.json" ] && echo --resume || true; }
mkdir -p runs/caltech101
edgeadapt import-weights "$data/pretrained/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite" --out "$weights"
edgeadapt pretrain --data "$data/caltech101/images" --image-size 224 --value-range -1 0.9921875 --val-fraction 0.3 \
    --split-seed 0 --split "$split" --data-name "Caltech-101 (80 of its 101 classes)" --model mobilenet_v1_imagenet --weights "$weights" --scope last_block --views 2 \
    --norm-statistics frozen --classifier cosine --margin 0.1 --feature-norm 10 --epochs "$epochs" --batch-size 128 \
    --max-lr 3e-4 --seed 0 --eval-tasks 0 --no-progress --out "$pretrained" $(resume "$pretrained")
edgeadapt export "$pretrained/checkpoint" -o "$out" --scope head --head-init prototypes --head-scale 0.03 \
    --inner-steps 5 --inner-lr 0.5 --max-ways 20 --max-shots 10 --force
python -c "import sys; from edgeadapt.sdk import load_checkpoint, save_checkpoint
model, config = load_checkpoint(sys.argv[1]); save_checkpoint(sys.argv[2], model, config)" \
    "$pretrained/checkpoint" "$out/checkpoint"
