#!/usr/bin/env bash
# Rebuilds the bundled fashion-mnist model (glowflow/models/fashion-mnist) and the
# out-of-distribution figures in docs/ood/: splits the Fashion-MNIST training set (the first
# 55,000 images to train on, the last 5,000 held out), trains for 80 minutes on a 2-core CPU,
# exports the model with its held-out bits/dim and a gallery, and makes the OOD figures
# (docs/make_ood.sh).
# Usage: bash docs/make_fashion_mnist.sh PATH/TO/shared/data WORK_DIR
# Needs Debian's dataset-fashion-mnist and the font packages below (apt-get install them).
set -euo pipefail
data=$1
work=$2
mkdir -p "$work"
fm=/usr/share/datasets/fashion-mnist  # dpkg -L dataset-fashion-mnist
fonts="fonts-freefont-ttf fonts-dkg-handwriting fonts-breip fonts-bwht fonts-femkeklaver \
fonts-humor-sans fonts-rufscript fonts-comic-neue fonts-urw-base35 fonts-linuxlibertine \
fonts-sil-gentium fonts-noto-core"
for pkg in dataset-fashion-mnist $fonts; do
    dpkg -s "$pkg" >/dev/null 2>&1 || { echo "install $pkg first (apt-get install $pkg)"; exit 1; }
done

names="T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
python tools/spec_to_npz.py "mnist:$fm" "$work/fashion_train.npz" --class-names "$names"
python tools/split_npz.py "$work/fashion_train.npz" 55000 "$work/fashion55k.npz" \
    "$work/fashion_heldout.npz"
python tools/split_npz.py "$data/mnist_train.npz" 55000 "$work/mnist55k.npz" \
    "$work/mnist_heldout.npz"

# The same architecture as the bundled MNIST model. --precision is left at auto, which chose
# bf16 on the machine this ran on (its couplings ran a step 1.42x as fast as in fp32).
glowflow train --dataset "npz:$work/fashion55k.npz" --val-dataset "npz:$work/fashion_heldout.npz" \
    --pad 2 --levels 3 --depth 8 --hidden-channels 96 --batch-size 64 --lr 2e-3 \
    --warmup-steps 500 --max-time 80 --eval-every 2000 --sample-every 4000 \
    --checkpoint-every 1000 --no-progress --seed 0 --out "$work/fashion_run"

glowflow export "$work/fashion_run" glowflow/models/fashion-mnist --dtype float32 \
    --name "Glow on Fashion-MNIST (32x32)" \
    --data-description "the first 55,000 images of the Fashion-MNIST training set, zero-padded \
to 32x32" \
    --heldout "npz:$work/fashion_heldout.npz" \
    --heldout-description "the last 5,000 images of the Fashion-MNIST training set (never \
trained on)" \
    --data-license "Fashion-MNIST (Xiao, Rasul and Vollgraf 2017), MIT licence" \
    --notes "Made by docs/make_fashion_mnist.sh in the glowflow repository (the paths in the \
command are its work folder), with the bundled MNIST model's architecture, for \
out-of-distribution experiments (glowflow ood). Trained for 80 minutes on two CPU threads; \
--precision auto chose bf16 there. Weights are the exponential moving average (0.999)."
python tools/add_gallery.py glowflow/models/fashion-mnist "npz:$work/fashion_heldout.npz" 36 \
    "Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, MIT licence): the first 36 of the 5,000 \
held-out images (never trained on)." --pad 2
glowflow sample --checkpoint fashion-mnist --seeds 0-63 --temperature 0.7 \
    --out docs/pretrained/fashion-mnist_samples.png

# The out-of-distribution figures of this model, of the MNIST model and of the faces model.
bash docs/make_ood.sh "$data" "$work"
