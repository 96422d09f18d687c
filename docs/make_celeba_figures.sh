#!/usr/bin/env bash
# Rebuilds docs/celeba/: trains a small Glow on the 5,000 CelebA faces of celeba64.npz on a
# CPU (38 minutes of training), then draws the figures from its checkpoint.
# Usage: bash docs/make_celeba_figures.sh PATH/TO/celeba64.npz RUN_DIR
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
glowflow interpolate --checkpoint "$run" --dataset "$data" --pairs 4990,4991 4992,4993 4994,4995 \
    --steps 8 --out $out/interpolation.png
for attr in Smiling Eyeglasses; do
    glowflow manipulate --checkpoint "$run" --dataset "$data" --attribute $attr \
        --images 4990,4992,4994,4996 --alphas -2,-1,0,1,2 --out $out/$(echo $attr | tr A-Z a-z).png
done
cp "$run/learning_curve.png" $out/learning_curve.png
cp "$run/summary.json" $out/summary.json
