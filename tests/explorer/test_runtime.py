"""The explorer on ONNX Runtime: the same entries, edits and samples as on PyTorch, graphs found
by the weights they were made from, and ``glowflow serve --runtime`` choosing between them."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_one_line_error, main_in_process, randomize_, tiny_explorer

from glowflow import Glow
from glowflow.explorer.checks import ExplorerError
from glowflow.explorer.runtime import OnnxRuntime, TorchRuntime, choose_runtime
from glowflow.nn.objective import preprocess

pytest.importorskip("onnxruntime", reason="the ONNX runtime is the glowflow[onnx] extra")
from glowflow.hub.onnx_export import (  # noqa: E402
    cached_graphs,
    export_onnx,
    graphs_of,
    weights_digest,
)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The tiny explorer on PyTorch and on ONNX Runtime, the same model and gallery."""
    eager = tiny_explorer()
    folder = tmp_path_factory.mktemp("graphs")
    export_onnx(eager.model, folder)
    onnx = tiny_explorer(runtime=OnnxRuntime(folder, eager.model.config))
    return eager, onnx


def test_the_gallery_is_held_alike_and_reconstructs_exactly(both):
    eager, onnx = both
    assert onnx.runtime.name == "onnx" and eager.runtime.name == "torch"
    assert len(eager.gallery) == len(onnx.gallery) == 6
    for a, b in zip(eager.gallery, onnx.gallery):
        assert b.reconstruction_error == 0 == a.reconstruction_error
        assert abs(a.bpd - b.bpd) < 1e-4
        assert torch.allclose(a.eps, b.eps.to(a.eps), atol=1e-3)


@pytest.mark.parametrize("make", ["edit", "sample", "mix"])
def test_edits_samples_and_mixes_are_pytorchs_within_one_grey_level(both, make):
    eager, onnx = both
    calls = {"edit": lambda e: e.edit("g1", {"Odd": 1.5, "Big": -0.5}),
             "sample": lambda e: e.sample(7, 0.8),
             "mix": lambda e: e.mix("g0", "g3", 0.4, "spherical", "mb")}  # fmt: skip
    a, b = calls[make](eager), calls[make](onnx)
    diff = (a.image.long() - b.image.long()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    assert a.overflow == b.overflow


def test_an_overflowing_latent_is_flagged_by_the_graph_too(both):
    far = torch.full((1, both[0].model.num_dims), 1e30)
    for explorer in both:
        assert bool(explorer.runtime.decode(far, None)[1][0])


def conditional_model() -> Glow:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        torch.manual_seed(3)
        model = Glow((1, 8, 8), levels=2, depth=1, hidden_channels=8, num_classes=3)
        images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
        model.initialize(preprocess(images, 8), torch.arange(12) % 3)
        randomize_(model, 0.05)
        return model.eval()
    finally:
        torch.set_default_dtype(old)


def test_a_class_conditional_models_marginal_and_likeliest_class_agree(tmp_path):
    model = conditional_model()
    export_onnx(model, tmp_path)
    eager, onnx = TorchRuntime(model), OnnxRuntime(tmp_path, model.config)
    images = torch.randint(0, 256, (9, 1, 8, 8), dtype=torch.uint8)
    assert torch.allclose(eager.bits_per_dim(images), onnx.bits_per_dim(images), atol=1e-4)
    assert torch.equal(eager.guess_labels(images), onnx.guess_labels(images))
    labels = eager.guess_labels(images)
    back, overflow = onnx.decode(onnx.encode(images, labels), labels)
    assert torch.equal(back, images) and not overflow.any()


def test_graphs_are_found_by_the_weights_they_hold(tmp_path, monkeypatch):
    """Graphs beside a model serve it only while its weights are those they were made from;
    otherwise the cache is used, exported into once."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = conditional_model()
    beside = tmp_path / "model"
    export_onnx(model, beside)
    assert graphs_of(model, beside) == beside
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # the weights change: the graphs no longer match
    assert graphs_of(model, beside) is None
    made = cached_graphs(model, beside)
    assert made == tmp_path / "cache" / "glowflow" / "onnx" / weights_digest(model)
    assert graphs_of(model, beside) == made and cached_graphs(model) == made


def test_choose_runtime_exports_only_when_asked_and_keeps_other_devices_on_pytorch(
    tmp_path, monkeypatch
):
    """ONNX Runtime runs here on the CPU: ``auto`` takes it only for a model on the CPU whose
    graphs exist already; ``onnx`` exports them first."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model, said = conditional_model(), []
    assert choose_runtime(model, "torch").name == "torch"
    assert choose_runtime(model, "auto", say=said.append).name == "torch" and not said
    assert choose_runtime(model, "onnx", say=said.append).name == "onnx" and said
    assert choose_runtime(model, "auto", say=said.append).name == "onnx"  # now the graphs exist
    assert choose_runtime(model.to("meta"), "auto").name == "torch"
    with pytest.raises(ExplorerError, match="--runtime is one of"):
        choose_runtime(model, "tpu")


def test_serve_runtime_onnx_without_the_extra_says_how_to_get_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec

    def no_onnxruntime(name, *args):
        return None if name == "onnxruntime" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_onnxruntime)
    with pytest.raises(ExplorerError, match=r"pip install 'glowflow\[onnx\]'"):
        choose_runtime(conditional_model(), "onnx")
    r = main_in_process("serve", "--checkpoint", "mnist", "--runtime", "onnx", "--port", "1")
    assert_one_line_error(r, "--runtime onnx needs the onnx extra")


def test_the_runtime_is_no_concern_of_the_page(both):
    """Explorers of either runtime describe the same model to the page."""
    eager, onnx = both
    assert eager.model_info() == onnx.model_info()


def test_a_class_conditional_model_needs_labels_in_either_runtime(tmp_path):
    model = conditional_model()
    export_onnx(model, tmp_path)
    images = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    for runtime in (TorchRuntime(model), OnnxRuntime(tmp_path, model.config)):
        with pytest.raises(ValueError, match="label"):
            runtime.encode(images, None)
        with pytest.raises(ValueError, match="label"):
            runtime.decode(torch.zeros(2, model.num_dims), None)
