#!/usr/bin/env bash
# Rebuilds the bundled celeba64 model (glowflow/models/celeba64) and its figures in
# docs/pretrained/, in three stages of one to two hours each on a 2-core CPU: stage 1 trains from
# random weights on the first 4,750 faces of celeba64.npz; stage 2 continues from stage 1's
# weights on 8,250 faces (those and the first 3,500 of celeba64_more.npz); stage 3 widens stage
# 2's coupling networks from 128 to 192 channels and trains on. All keep the last 250 faces of
# celeba64.npz held out, and stages 2 and 3 also the last 500 of celeba64_more.npz. The
# model is exported with its held-out bits/dim and attribute directions, and the figures drawn.
# (The bundled mnist model: docs/make_mnist.sh.)
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
glowflow export "$work/celeba_run" "$work/celeba64_v1" --dtype float32 \
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


# ---- stage 2: from stage 1's weights, on 8,250 faces -------------------------------------------
python tools/join_npz.py "$data/celeba64.npz[:4750]" "$data/celeba64_more.npz[:3500]" \
    "$work/celeba9k_train.npz"
python tools/join_npz.py "$data/celeba64_more.npz[3500:]" "$work/celeba_more_heldout.npz"
# The run that made the shipped model started on one thread with --steps 5800, was stopped with
# Ctrl-C at step 1,095 and resumed on two threads (--steps 5200), and stopped again at step
# 1,389 and resumed with the budget below, which changes the cosine schedule's length and so
# the learning rate by a few per cent from then on.
OMP_NUM_THREADS=2 glowflow train --dataset "npz:$work/celeba9k_train.npz" \
    --val-dataset "npz:$work/celeba_heldout.npz" --init-from "$work/celeba64_v1" --hflip \
    --n-bits 5 --precision fp32 --lr 1e-3 --warmup-steps 100 --steps 6000 --eval-every 500 \
    --sample-every 1000 --checkpoint-every 250 --no-progress --seed 1 --out "$work/celeba9k_run"

glowflow export "$work/celeba9k_run" "$work/celeba9k_f16" --dtype float16
c32=$(bpd "$work/celeba9k_run" "npz:$work/celeba_heldout.npz")
c16=$(bpd "$work/celeba9k_f16" "npz:$work/celeba_heldout.npz")
echo "held-out bits/dim, float32 -> float16: CelebA $c32 -> $c16"
why="Made by docs/make_pretrained.sh in the glowflow repository (the paths in the command are \
its work folder), in two stages. Stage 1 trained from random weights on the first 4,750 faces \
for 118 minutes (6,347 steps; 1.4655 bits/dim on the held-out faces). Stage 2, this model, \
started from stage 1's weights (--init-from) and trained on 8,250 faces with a new cosine \
schedule. Weights are the exponential moving average (0.999)."
glowflow export "$work/celeba9k_run" "$work/celeba64_v2" --dtype float32 \
    --name "Glow on CelebA 64x64, 5-bit" \
    --data-description "8,250 faces: the first 4,750 of celeba64.npz (CelebA's aligned images \
000001-004750) and the first 3,500 of celeba64_more.npz (006001-009500), centre-cropped and \
resized to 64x64 (see the data's README), with random horizontal flips" \
    --heldout "npz:$work/celeba_heldout.npz" \
    --heldout-description "the last 250 faces of celeba64.npz, CelebA images 004751-005000 \
(never trained on, in either stage)" \
    --test "npz:$work/celeba_more_heldout.npz" \
    --test-description "the last 500 faces of celeba64_more.npz, CelebA images 009501-010000 \
(never trained on, in either stage)" \
    --attributes "npz:$work/celeba9k_train.npz" \
    --data-license "CelebA (Liu et al. 2015): non-commercial research purposes only" \
    --notes "$why The run was stopped twice (Ctrl-C) and resumed, the second time with the \
final budget of 6,000 steps (see the script). The 40 attribute directions were computed on the \
8,250 training faces. Stored as float32; float16 would give $c16 bits/dim on the held-out faces \
against $c32. No published figure compares: these are 5-bit 64x64 centre crops of CelebA's \
aligned images and held-out splits of this data set's own, while papers report CelebA-HQ or \
other sizes, bit depths and splits."


# ---- stage 3: stage 2 widened to 192 channels, on the same faces ---------------------------
# --init-from with a larger --hidden-channels widens every coupling network without changing
# what the model computes (new units copy trained ones' inputs, their outputs start at zero), so
# the run starts at stage 2's bits/dim and trains on with more capacity. The run that made the
# shipped model had a 120-minute budget on a 2-core CPU it shared with other work (niced), which
# fitted the steps its card gives.
OMP_NUM_THREADS=2 glowflow train --dataset "npz:$work/celeba9k_train.npz" \
    --val-dataset "npz:$work/celeba_heldout.npz" --init-from "$work/celeba64_v2" \
    --hidden-channels 192 --hflip --n-bits 5 --precision fp32 --lr 7e-4 --warmup-steps 100 \
    --max-time 120 --eval-every 500 --sample-every 1000 --checkpoint-every 250 --no-progress \
    --seed 2 --out "$work/wide_run"

glowflow export "$work/wide_run" "$work/wide_f16" --dtype float16
c32=$(bpd "$work/wide_run" "npz:$work/celeba_heldout.npz")
c16=$(bpd "$work/wide_f16" "npz:$work/celeba_heldout.npz")
echo "held-out bits/dim, float32 -> float16: CelebA $c32 -> $c16"
why="Made by docs/make_pretrained.sh in the glowflow repository (the paths in the command are \
its work folder), in three stages. Stage 1 trained from random weights on the first 4,750 faces \
(118 minutes, 6,347 steps; 1.4655 bits/dim on the held-out faces); stage 2 continued from it on \
8,250 faces (81 minutes, 6,000 steps; 1.4346); stage 3, this model, is stage 2 widened from 128 \
to 192 channels without changing what it computed (--init-from with a larger \
--hidden-channels) and trained on the same 8,250 faces with a new cosine schedule over a \
120-minute budget. Weights are the exponential moving average (0.999)."
glowflow export "$work/wide_run" glowflow/models/celeba64 --dtype float16 \
    --name "Glow on CelebA 64x64, 5-bit" \
    --data-description "8,250 faces: the first 4,750 of celeba64.npz (CelebA's aligned images \
000001-004750) and the first 3,500 of celeba64_more.npz (006001-009500), centre-cropped and \
resized to 64x64 (see the data's README), with random horizontal flips" \
    --heldout "npz:$work/celeba_heldout.npz" \
    --heldout-description "the last 250 faces of celeba64.npz, CelebA images 004751-005000 \
(never trained on, in any stage)" \
    --test "npz:$work/celeba_more_heldout.npz" \
    --test-description "the last 500 faces of celeba64_more.npz, CelebA images 009501-010000 \
(never trained on, in any stage)" \
    --attributes "npz:$work/celeba9k_train.npz" \
    --data-license "CelebA (Liu et al. 2015): non-commercial research purposes only" \
    --notes "$why The 40 attribute directions were computed on the 8,250 training faces. Stored \
as float16 (half the size): $c16 bits/dim on the held-out faces against $c32 in float32. No \
published figure compares: these are 5-bit 64x64 centre crops of CelebA's aligned images and \
held-out splits of this data set's own, while papers report CelebA-HQ or other sizes, bit \
depths and splits."

# a few held-out images ship with each model, for glowflow serve
python tools/add_gallery.py glowflow/models/celeba64 "npz:$work/celeba_heldout.npz" 36 \
    "CelebA (Liu et al. 2015), images 004751-004786: held out, never trained on. CelebA's terms: \
non-commercial research purposes only." --prefix "CelebA "

out=docs/pretrained
mkdir -p $out
# stage 1 against the shipped model: the same seeds at T=0.7, with each row's sharpness
python tools/compare_samples.py "$work/celeba64_v1" celeba64 $out/celeba64_sharper.png \
    --seeds 0-11 --temperature 0.7 --reference "npz:$work/celeba_heldout.npz"
glowflow sample --checkpoint celeba64 --seeds 0-35 --temperature 0.7 --out $out/celeba64_samples.png
glowflow manipulate --checkpoint celeba64 --dataset "npz:$work/celeba_heldout.npz" \
    --attribute Smiling --images 0,3,7,12 --alphas=-1.5,-0.75,0,0.75,1.5 \
    --out $out/celeba64_smiling.png
