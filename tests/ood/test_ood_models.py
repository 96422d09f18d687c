"""The known results, on the bundled models and real images: a Fashion-MNIST Glow gives MNIST
digits higher likelihood than clothes (raw bits/dim fails), and the input-complexity score
repairs it; the density of states tells both models' own images from the other's, one image at
a time, in both directions."""

from __future__ import annotations

from pathlib import Path

import pytest

from glowflow.data.datasets import load_dataset
from glowflow.hub.gallery import load_gallery
from glowflow.hub.load import load_model
from glowflow.hub.names import resolve_pretrained
from glowflow.ood.detection import detect, score_images

FASHION_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


@pytest.fixture(scope="module")
def fashion_model():
    return load_model("fashion-mnist").model


def by_method(report):
    return {r["method"]: r for r in report.records}


def test_digits_are_more_likely_than_clothes_under_the_fashion_model(fashion_model):
    # the 36 held-out images that ship with the model: no data set needed
    clothes = score_images(fashion_model, load_gallery(resolve_pretrained("fashion-mnist")).images)
    digits = score_images(fashion_model, load_dataset("mnist-mini", limit=200, pad=2).images)
    r = by_method(detect(clothes, {"mnist": digits}, ["bpd", "complexity", "dose"]))
    assert r["bpd"]["auroc"] < 0.3  # the failure: digits get fewer bits/dim than clothes
    assert r["complexity"]["auroc"] > 0.9
    assert r["dose"]["auroc"] > 0.99 and r["dose"]["tpr_at_threshold"] > 0.95


def test_the_mnist_model_tells_its_digits_from_clothes_one_image_at_a_time():
    # both galleries: the mnist model's 36 held-out digits, and fashion-mnist's 36 held-out
    # clothes with their 2-pixel padding cropped back to 28x28
    digits = load_gallery(resolve_pretrained("mnist")).images
    clothes = load_gallery(resolve_pretrained("fashion-mnist")).images[:, :, 2:-2, 2:-2]
    model = load_model("mnist").model
    scores = {name: score_images(model, x.contiguous()) for name, x in
              (("digits", digits), ("clothes", clothes))}  # fmt: skip
    r = by_method(detect(scores["digits"], {"clothes": scores["clothes"]}, ["bpd", "dose"]))
    assert r["bpd"]["auroc"] > 0.99  # the easy direction: clothes cost more bits than digits
    assert r["dose"]["auroc"] > 0.99 and r["dose"]["tpr_at_threshold"] > 0.95


@pytest.mark.slow
def test_the_fashion_mnist_test_set_against_digits(fashion_model):
    if not FASHION_TEST.exists():
        pytest.skip(f"{FASHION_TEST} is absent: apt-get install dataset-fashion-mnist")
    clothes = score_images(
        fashion_model, load_dataset(f"mnist:{FASHION_TEST}", limit=600, pad=2).images
    )
    digits = score_images(fashion_model, load_dataset("mnist-mini", limit=600, pad=2).images)
    r = by_method(detect(clothes, {"mnist": digits}, m=10))
    assert r["bpd"]["auroc"] < 0.3
    assert r["complexity"]["auroc"] > 0.95
    assert r["typicality"]["auroc"] > 0.95  # two-sided: a set that is too likely is atypical
    assert r["dose"]["auroc"] > 0.99 and r["dose"]["fpr95"] < 0.05  # and so is one image
