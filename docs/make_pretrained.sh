#!/usr/bin/env bash
# Rebuilds the two bundled models (glowflow/models/mnist, glowflow/models/celeba64) and the
# figures in docs/pretrained/: splits the data (training images first, the held-out ones last, in
# file order), trains both models side by side on a CPU (118 minutes each, one thread each),
# exports them with their held-out bits/dim in the model card, and draws the figures.
# Usage: bash docs/make_pretrained.sh PATH/TO/shared/data WORK_DIR
set -euo pipefail
data=$1
work=$2
mkdir -p "$work"
python tools/split_npz.py "$data/mnist_train.npz" 55000 "$work/mnist55k.npz" "$work/mnist_heldout.npz"
python tools/split_npz.py "$data/celeba64.npz" 4750 "$work/celeba_train.npz" "$work/celeba_heldout.npz"

# The held-out images are the validation set of each run: watched, never trained on, and not used
# to choose anything but the figures' faces.
OMP_NUM_THREADS=1 glowflow train --dataset "npz:$work/mnist55k.npz" \
    --val-dataset "npz:$work/mnist_heldout.npz" --pad 2 --levels 3 --depth 8 \
    --hidden-channels 96 --batch-size 64 --lr 2e-3 --warmup-steps 500 --precision bf16 \
    --channels-last --max-time 118 --eval-every 2000 --sample-every 4000 --checkpoint-every 1000 \
    --no-progress --seed 0 --out "$work/mnist_run" &
OMP_NUM_THREADS=1 glowflow train --dataset "npz:$work/celeba_train.npz" \
    --val-dataset "npz:$work/celeba_heldout.npz" --hflip --levels 4 --depth 8 \
    --hidden-channels 128 --n-bits 5 --precision bf16 --channels-last --lr 1.5e-3 \
    --max-time 118 --eval-every 1000 --sample-every 1000 --checkpoint-every 500 --no-progress \
    --seed 0 --out "$work/celeba_run" &
wait

MNIST_LICENSE="MNIST (LeCun, Cortes and Burges), commonly distributed under CC BY-SA 3.0"
CELEBA_LICENSE="CelebA (Liu et al. 2015): non-commercial research purposes only"
glowflow export "$work/mnist_run" glowflow/models/mnist --dtype "${MNIST_DTYPE:-float32}" \
    --name "Glow on MNIST (32x32)" --heldout "npz:$work/mnist_heldout.npz" \
    --data-license "$MNIST_LICENSE"
glowflow export "$work/celeba_run" glowflow/models/celeba64 --dtype "${CELEBA_DTYPE:-float32}" \
    --name "Glow on CelebA 64x64, 5-bit" --heldout "npz:$work/celeba_heldout.npz" \
    --attributes "npz:$work/celeba_train.npz" --data-license "$CELEBA_LICENSE"

out=docs/pretrained
mkdir -p $out
glowflow sample --checkpoint mnist --seeds 0-63 --temperature 0.7 --out $out/mnist_samples.png
glowflow sample --checkpoint celeba64 --seeds 0-35 --temperature 0.7 --out $out/celeba64_samples.png
glowflow manipulate --checkpoint celeba64 --dataset "npz:$work/celeba_heldout.npz" \
    --attribute Smiling --images 0,3,7,12 --alphas=-1.5,-0.75,0,0.75,1.5 \
    --out $out/celeba64_smiling.png
