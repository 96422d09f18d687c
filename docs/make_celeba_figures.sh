#!/usr/bin/env bash
# Rebuilds docs/celeba/: trains a small Glow on the 5,000 CelebA faces of celeba64.npz on a
# CPU (38 minutes of training), then draws the figures from its checkpoint.
# Usage: bash docs/make_celeba_figures.sh PATH/TO/celeba64.npz RUN_DIR
# The faces interpolated and edited are in the run's validation split (--seed 0, 5%): the
# model never trained on them.
set -euo pipefail
data=npz:$1
run=$2
out=docs/celeba
glowflow train --dataset "$data" --levels 4 --depth 8 --hidden-channels 96 --n-bits 5 --hflip \
    --lr 1.5e-3 --max-time 38 --eval-every 1000 --sample-every 1000 --checkpoint-every 500 \
    --out "$run"
glowflow sample --checkpoint "$run" --seeds 0-35 --temperature 0.7 --out $out/samples.png
glowflow sample --checkpoint "$run" --seeds 0-7 --temperatures 0,0.25,0.5,0.6,0.7,0.8,0.9,1.0 \
    --out $out/temperatures.png
glowflow interpolate --checkpoint "$run" --dataset "$data" --pairs 4637,4700 4897,4913 4916,4934 \
    --steps 8 --out $out/interpolation.png
glowflow manipulate --checkpoint "$run" --dataset "$data" --attribute Smiling \
    --images 4949,4952,4963,4980 --alphas=-2,-1,0,1,2 --out $out/smiling.png
# beyond 1.5 some of these faces' edited latents leave the model's range (they decode to inf)
glowflow manipulate --checkpoint "$run" --dataset "$data" --attribute Eyeglasses \
    --images 4949,4952,4963,4980 --alphas=-1.5,-0.75,0,0.75,1.5 --out $out/eyeglasses.png
cp "$run/learning_curve.png" $out/learning_curve.png
cp "$run/summary.json" $out/summary.json
