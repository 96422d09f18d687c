#!/usr/bin/env bash
# Rebuilds the bundled celeba64 model (glowflow/models/celeba64) and its figures in
# docs/pretrained/: splits the data (training faces first, the held-out ones last, in file order),
# trains on a 2-core CPU (about two hours), exports it with its held-out bits/dim and attribute
# directions, and draws the figures. (The bundled mnist model: docs/make_mnist.sh.)
# Usage: bash docs/make_pretrained.sh PATH/TO/shared/data WORK_DIR
set -euo pipefail
data=$1
work=$2
mkdir -p "$work"
python tools/split_npz.py "$data/celeba64.npz" 4750 "$work/celeba_train.npz" "$work/celeba_heldout.npz"

# The held-out images are the validation set of each run: watched, never trained on, and not used
# to choose anything. The run started on one thread with a 118-minute budget (the second thread
# trained an earlier MNIST model beside it), was stopped (Ctrl-C, which saves a checkpoint) after
# 72 minutes and resumed on both threads for the rest of its budget.
celeba_train() {
    glowflow train --dataset "npz:$work/celeba_train.npz" \
        --val-dataset "npz:$work/celeba_heldout.npz" --hflip --levels 4 --depth 8 \
        --hidden-channels 128 --n-bits 5 --precision bf16 --channels-last --lr 1.5e-3 \
        --max-time 118 --eval-every 1000 --sample-every 1000 --checkpoint-every 500 \
        --no-progress --seed 0 --out "$work/celeba_run"
}
export -f celeba_train
export work
OMP_NUM_THREADS=1 timeout -s INT 72m bash -c celeba_train || true
OMP_NUM_THREADS=2 glowflow train --resume "$work/celeba_run" --no-progress

# bits/dim of a model folder or run on held-out images (EMA weights), to 4 decimals
bpd() { glowflow eval --checkpoint "$1" --dataset "$2" ${3:+--pad $3} --json --no-progress |
        python -c 'import json, sys; print("%.4f" % json.load(sys.stdin)["bpd"])'; }
# float16 would halve the files: measure what it costs on the held-out images
glowflow export "$work/celeba_run" "$work/celeba_f16" --dtype float16
c32=$(bpd "$work/celeba_run" "npz:$work/celeba_heldout.npz")
c16=$(bpd "$work/celeba_f16" "npz:$work/celeba_heldout.npz")
echo "held-out bits/dim, float32 -> float16: CelebA $c32 -> $c16"

why="Made by docs/make_pretrained.sh in the glowflow repository (the paths in the command are \
its work folder). Width and depth were chosen for speed on one CPU thread (a 60-step timing \
probe of candidate sizes), not by a search over bits/dim, which did not fit in one working \
session. Weights are the exponential moving average (0.999)."
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
bits/dim on the held-out faces against $c32. No published figure compares with $c32: it is measured on 5-bit 64x64 centre crops of CelebA's aligned images, on a held-out split of this data set's own (250 faces), while papers report CelebA-HQ or other sizes, bit depths and splits."

# a few held-out images ship with each model, for glowflow serve
python tools/add_gallery.py glowflow/models/celeba64 "npz:$work/celeba_heldout.npz" 36 \
    "CelebA (Liu et al. 2015), images 004751-004786: held out, never trained on. CelebA's terms: \
non-commercial research purposes only." --prefix "CelebA "

out=docs/pretrained
mkdir -p $out
glowflow sample --checkpoint celeba64 --seeds 0-35 --temperature 0.7 --out $out/celeba64_samples.png
glowflow manipulate --checkpoint celeba64 --dataset "npz:$work/celeba_heldout.npz" \
    --attribute Smiling --images 0,3,7,12 --alphas=-1.5,-0.75,0,0.75,1.5 \
    --out $out/celeba64_smiling.png
