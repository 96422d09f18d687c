#!/usr/bin/env bash
# Rebuilds the two bundled models (glowflow/models/mnist, glowflow/models/celeba64) and the
# figures in docs/pretrained/: splits the data (training images first, the held-out ones last, in
# file order), trains both models side by side on a 2-core CPU (about two hours), exports them
# with their held-out bits/dim in the model card, and draws the figures.
# Usage: bash docs/make_pretrained.sh PATH/TO/shared/data WORK_DIR
set -euo pipefail
data=$1
work=$2
mkdir -p "$work"
python tools/split_npz.py "$data/mnist_train.npz" 55000 "$work/mnist55k.npz" "$work/mnist_heldout.npz"
python tools/split_npz.py "$data/celeba64.npz" 4750 "$work/celeba_train.npz" "$work/celeba_heldout.npz"

# The held-out images are the validation set of each run: watched, never trained on, and not used
# to choose anything. Both runs start side by side on one thread each with a 118-minute budget.
# MNIST was stopped (Ctrl-C, which saves a checkpoint) after 58 minutes and resumed with a
# 70-minute budget, which ends its cosine schedule sooner; CelebA was then stopped after 72
# minutes and resumed on both threads for the rest of its budget.
mnist_train() {
    glowflow train --dataset "npz:$work/mnist55k.npz" \
        --val-dataset "npz:$work/mnist_heldout.npz" --pad 2 --levels 3 --depth 8 \
        --hidden-channels 96 --batch-size 64 --lr 2e-3 --warmup-steps 500 --precision bf16 \
        --channels-last --max-time 118 --eval-every 2000 --sample-every 4000 \
        --checkpoint-every 1000 --no-progress --seed 0 --out "$work/mnist_run"
}
celeba_train() {
    glowflow train --dataset "npz:$work/celeba_train.npz" \
        --val-dataset "npz:$work/celeba_heldout.npz" --hflip --levels 4 --depth 8 \
        --hidden-channels 128 --n-bits 5 --precision bf16 --channels-last --lr 1.5e-3 \
        --max-time 118 --eval-every 1000 --sample-every 1000 --checkpoint-every 500 \
        --no-progress --seed 0 --out "$work/celeba_run"
}
export -f mnist_train celeba_train
export work
(
    OMP_NUM_THREADS=1 timeout -s INT 58m bash -c mnist_train || true
    OMP_NUM_THREADS=1 glowflow train --resume "$work/mnist_run" --max-time 70 --no-progress
) &
OMP_NUM_THREADS=1 timeout -s INT 72m bash -c celeba_train || true
wait
OMP_NUM_THREADS=2 glowflow train --resume "$work/celeba_run" --no-progress

# bits/dim of a model folder or run on held-out images (EMA weights), to 4 decimals
bpd() { glowflow eval --checkpoint "$1" --dataset "$2" ${3:+--pad $3} --json --no-progress |
        python -c 'import json, sys; print("%.4f" % json.load(sys.stdin)["bpd"])'; }
# float16 would halve the files: measure what it costs on the held-out images
glowflow export "$work/mnist_run" "$work/mnist_f16" --dtype float16
glowflow export "$work/celeba_run" "$work/celeba_f16" --dtype float16
m32=$(bpd "$work/mnist_run" "npz:$work/mnist_heldout.npz" 2)
m16=$(bpd "$work/mnist_f16" "npz:$work/mnist_heldout.npz" 2)
c32=$(bpd "$work/celeba_run" "npz:$work/celeba_heldout.npz")
c16=$(bpd "$work/celeba_f16" "npz:$work/celeba_heldout.npz")
echo "held-out bits/dim, float32 -> float16: MNIST $m32 -> $m16, CelebA $c32 -> $c16"

why="Made by docs/make_pretrained.sh in the glowflow repository (the paths in the command are \
its work folder). Width and depth were chosen for speed on one CPU thread (a 60-step timing \
probe of candidate sizes), not by a search over bits/dim, which did not fit in one working \
session. Weights are the exponential moving average (0.999)."
glowflow export "$work/mnist_run" glowflow/models/mnist --dtype float32 \
    --name "Glow on MNIST (32x32)" \
    --data-description "the first 55,000 digits of the MNIST training set, zero-padded to 32x32" \
    --heldout "npz:$work/mnist_heldout.npz" \
    --heldout-description "the last 5,000 digits of the MNIST training set (never trained on)" \
    --data-license "MNIST (LeCun, Cortes and Burges), commonly distributed under CC BY-SA 3.0" \
    --notes "$why The run trained for 58 minutes of a 118-minute cosine budget on one thread, \
was stopped with Ctrl-C and resumed with --max-time 70 (the command above), which brought the \
learning rate to zero sooner. Stored as float32; float16 would give $m16 bits/dim on the \
held-out digits against $m32."
glowflow export "$work/celeba_run" glowflow/models/celeba64 --dtype float32 \
    --name "Glow on CelebA 64x64, 5-bit" \
    --data-description "the first 4,750 faces of celeba64.npz: CelebA's aligned images 000001-004750, \
centre-cropped and resized to 64x64 (see the data's README), with random horizontal flips" \
    --heldout "npz:$work/celeba_heldout.npz" \
    --heldout-description "the last 250 faces of celeba64.npz, CelebA images 004751-005000 (never trained on)" \
    --attributes "npz:$work/celeba_train.npz" \
    --data-license "CelebA (Liu et al. 2015): non-commercial research purposes only" \
    --notes "$why The run trained for 72 minutes of a 118-minute cosine budget on one thread, \
was stopped with Ctrl-C and resumed on two threads for the rest of the budget. The 40 attribute \
directions were computed on the training faces. Stored as float32; float16 would give $c16 \
bits/dim on the held-out faces against $c32."

# a few held-out images ship with each model, for glowflow serve
python tools/add_gallery.py glowflow/models/celeba64 "npz:$work/celeba_heldout.npz" 36 \
    "CelebA (Liu et al. 2015), images 004751-004786: held out, never trained on. CelebA's terms: \
non-commercial research purposes only." --prefix "CelebA "
python tools/add_gallery.py glowflow/models/mnist "npz:$work/mnist_heldout.npz" 36 \
    "MNIST (LeCun, Cortes and Burges): the first 36 of the 5,000 held-out digits (never trained \
on), commonly distributed under CC BY-SA 3.0." --pad 2

out=docs/pretrained
mkdir -p $out
glowflow sample --checkpoint mnist --seeds 0-63 --temperature 0.7 --out $out/mnist_samples.png
glowflow sample --checkpoint celeba64 --seeds 0-35 --temperature 0.7 --out $out/celeba64_samples.png
glowflow manipulate --checkpoint celeba64 --dataset "npz:$work/celeba_heldout.npz" \
    --attribute Smiling --images 0,3,7,12 --alphas=-1.5,-0.75,0,0.75,1.5 \
    --out $out/celeba64_smiling.png
