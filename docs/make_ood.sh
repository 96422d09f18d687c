#!/usr/bin/env bash
# The out-of-distribution figures in docs/ood/ and the table of docs/ood.md: renders two sets of
# letters from the installed fonts, chooses the single-image method on held-out *training*
# images (docs/ood/candidates-*.json), then runs glowflow ood with its default methods for the
# two glyph models in both directions (the Fashion-MNIST model against MNIST digits, letters and
# other alphabets; the MNIST model against Fashion-MNIST, letters and alphabets), on each data
# set's official test images, and for the faces model against CIFAR-10 and large letters.
# Usage: bash docs/make_ood.sh PATH/TO/shared/data WORK_DIR
# Needs Debian's dataset-fashion-mnist and the fonts that docs/make_fashion_mnist.sh lists.
set -euo pipefail
data=$1
work=$2
mkdir -p "$work"
fm=/usr/share/datasets/fashion-mnist  # dpkg -L dataset-fashion-mnist

# Held-out training images (never trained on): where a method and its settings are chosen.
names="T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot"
python tools/spec_to_npz.py "mnist:$fm" "$work/fashion_train.npz" --class-names "$names"
python tools/split_npz.py "$work/fashion_train.npz" 55000 "$work/fashion55k.npz" \
    "$work/fashion_heldout.npz"
python tools/split_npz.py "$data/mnist_train.npz" 55000 "$work/mnist55k.npz" \
    "$work/mnist_heldout.npz"

# Letters set in type, MNIST-style (28x28, centre of mass centred): Latin, and other scripts.
python tools/render_glyphs.py letters "$work/letters.npz"
python tools/render_glyphs.py alphabets "$work/alphabets.npz"

python tools/ood_candidates.py --checkpoint fashion-mnist --pad 2 \
    --in-dist "npz:$work/fashion_heldout.npz" --ood "npz:$work/mnist_heldout.npz" \
    --ood "npz:$work/letters.npz" --ood "npz:$work/alphabets.npz" \
    --out docs/ood/candidates-fashion-mnist.json
python tools/ood_candidates.py --checkpoint mnist \
    --in-dist "npz:$work/mnist_heldout.npz" --ood "npz:$work/fashion_heldout.npz" \
    --ood "npz:$work/letters.npz" --ood "npz:$work/alphabets.npz" \
    --out docs/ood/candidates-mnist.json

# The reported runs: every default method, on the official test images. Each set is
# zero-padded to the size of the model that scores it (32x32 for fashion-mnist; the mnist
# model takes 28x28 as it is).
run_ood() {  # NAME CODEC ARGS...
    local name=$1 codec=$2
    shift 2
    glowflow ood --codec "$codec" --no-progress --out "$work/ood_${name}_$codec" "$@"
    mkdir -p "docs/ood/$name-$codec"
    cp "$work/ood_${name}_$codec/results.json" "$work/ood_${name}_$codec/histograms.png" \
        "docs/ood/$name-$codec/"  # scores.csv (one row per image) stays in the work folder
}
for codec in png webp; do
    run_ood fashion-mnist $codec --checkpoint fashion-mnist \
        --in-dist "mnist:$fm/t10k-images-idx3-ubyte.gz" --ood "npz:$data/mnist_test.npz" \
        --ood "npz:$work/letters.npz" --ood "npz:$work/alphabets.npz"
    run_ood mnist $codec --checkpoint mnist --in-dist "npz:$data/mnist_test.npz" \
        --ood "mnist:$fm/t10k-images-idx3-ubyte.gz" --ood "npz:$work/letters.npz" \
        --ood "npz:$work/alphabets.npz"
done

# Faces: the 750 faces the celeba64 model never trained on (the last 250 of celeba64.npz and
# the last 500 of celeba64_more.npz) against 1,000 CIFAR-10 images and the Latin letters, both
# resized to 64x64 (Pillow LANCZOS), the letters as three equal channels.
python tools/join_npz.py "$data/celeba64.npz[4750:]" "$data/celeba64_more.npz[3500:]" \
    "$work/faces_heldout.npz"
python tools/spec_to_npz.py "npz:$data/cifar10_train.npz" "$work/cifar64.npz" --image-size 64 \
    --limit 1000
python tools/spec_to_npz.py "npz:$work/letters.npz" "$work/letters64.npz" --image-size 64 --rgb
run_ood celeba64 png --checkpoint celeba64 --in-dist "npz:$work/faces_heldout.npz" \
    --ood "npz:$work/cifar64.npz" --ood "npz:$work/letters64.npz"

python tools/ood_table.py docs/ood/fashion-mnist-png/results.json \
    docs/ood/fashion-mnist-webp/results.json docs/ood/mnist-png/results.json \
    docs/ood/mnist-webp/results.json docs/ood/celeba64-png/results.json --readme docs/ood.md
