"""ONNX export: each option's tiny model as two graphs that ONNX Runtime runs like PyTorch, with
no matrix inverse or determinant in them, exact round trips at the model's bit depth."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch
from conftest import randomize_

from glowflow import Glow
from glowflow.hub.onnx_export import OnnxError, export_onnx, frozen_copy
from glowflow.nn.objective import postprocess, preprocess

onnx = pytest.importorskip("onnx", reason="ONNX export is the glowflow[onnx] extra")
ort = pytest.importorskip("onnxruntime", reason="ONNX export is the glowflow[onnx] extra")

SHAPE = (3, 8, 8)
OPTIONS = [
    dict(coupling="affine", permutation="lu", num_classes=None, n_bits=8),
    dict(coupling="additive", permutation="conv", num_classes=3, n_bits=5),
    dict(coupling="affine", permutation="shuffle", num_classes=None, n_bits=3),
    dict(coupling="affine", permutation="reverse", num_classes=2, n_bits=8),
]


def tiny(seed: int = 0, **options) -> Glow:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        torch.manual_seed(seed)
        model = Glow(SHAPE, levels=2, depth=2, hidden_channels=8, **options)
        images = torch.randint(0, 256, (16, *SHAPE), dtype=torch.uint8)
        labels = None if options.get("num_classes") is None else torch.arange(16) % 2
        model.initialize(preprocess(images, model.config.n_bits), labels)
        randomize_(model, 0.05)
        return model.eval()
    finally:
        torch.set_default_dtype(old)


def feeds(model: Glow, rng: np.random.Generator, n: int) -> tuple[dict, np.ndarray | None]:
    c, h, w = SHAPE
    images = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    feed = {"images": images, "noise": rng.random((n, h, w, c), dtype=np.float32)}
    labels = None
    if model.config.num_classes is not None:
        labels = rng.integers(0, model.config.num_classes, n).astype(np.int64)
        feed["label"] = labels
    return feed, labels


@pytest.fixture(scope="module", params=range(len(OPTIONS)), ids=lambda k: "-".join(
    str(v) for v in OPTIONS[k].values()))  # fmt: skip
def exported(request, tmp_path_factory):
    model = tiny(request.param, **OPTIONS[request.param])
    paths = export_onnx(model, tmp_path_factory.mktemp("onnx"))
    sessions = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for k, p in paths.items()}  # fmt: skip
    return model, paths, sessions


def test_the_graphs_hold_no_inverse_or_determinant_and_say_what_model_they_are(exported):
    model, paths, _ = exported
    for path in paths.values():
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
        ops = {node.op_type for node in proto.graph.node}
        assert not ops & {"Inverse", "Det", "Loop", "Scan"}, ops
        meta = {e.key: e.value for e in proto.metadata_props}
        assert meta["n_bits"] == str(model.config.n_bits)
        assert meta["image_shape"] == "3,8,8" and meta["num_dims"] == str(model.num_dims)
        assert meta["num_classes"] == str(model.config.num_classes or 0)


@pytest.mark.parametrize("batch", [1, 5])
def test_encode_then_decode_gives_the_images_back_at_the_models_bit_depth(exported, batch):
    """At the centre of each pixel's bin (noise 0.5) exactly; with any draw, exactly wherever
    the draw is not within float32's rounding of a bin's edge (there: the next bin)."""
    model, _, s = exported
    feed, labels = feeds(model, np.random.default_rng(batch), batch)
    drop = 8 - model.config.n_bits
    want = (feed["images"] >> drop) << drop  # the low bits a model of fewer bits drops
    label = {"label": labels} if labels is not None else {}
    for noise in ("drawn", "centre"):
        if noise == "centre":
            feed["noise"] = np.full_like(feed["noise"], 0.5)
        z, bpd = s["encoder"].run(None, feed)
        assert z.shape == (batch, model.num_dims) and bpd.shape == (batch,)
        back = s["decoder"].run(None, {"z": z, **label})[0]
        assert back.dtype == np.uint8
        inside = np.abs(feed["noise"] - 0.5) < 0.499  # not within 1e-3 of a bin's edge
        assert np.array_equal(back[inside], want[inside]), noise  # 0 grey levels
        assert np.abs(back.astype(int) - want).max() <= 2**drop


def test_the_encoders_latent_and_bits_per_dim_are_pytorchs(exported):
    model, _, s = exported
    feed, labels = feeds(model, np.random.default_rng(7), 6)
    z, bpd = s["encoder"].run(None, feed)
    y = None if labels is None else torch.from_numpy(labels)
    with torch.no_grad():
        x = preprocess(torch.from_numpy(feed["images"]).permute(0, 3, 1, 2),
                       model.config.n_bits,
                       noise=torch.from_numpy(feed["noise"]).permute(0, 3, 1, 2))  # fmt: skip
        want_z, want_bpd = model.encode(x, y), model.bits_per_dim(x, y)
    assert np.abs(bpd - want_bpd.numpy()).max() < 1e-4
    assert np.abs(z - want_z.numpy()).max() < 1e-3


def test_a_decoded_sample_is_within_one_grey_level_of_pytorchs(exported):
    """The same standard normal draw at T=0.7, decoded by both: floats round differently, so
    a pixel on the edge of a bin may land in the next one."""
    model, _, s = exported
    z = 0.7 * np.random.default_rng(3).standard_normal((8, model.num_dims)).astype(np.float32)
    labels = None if model.config.num_classes is None else np.arange(8) % 2
    got = s["decoder"].run(None, {"z": z, **({"label": labels} if labels is not None else {})})[0]
    y = None if labels is None else torch.from_numpy(labels)
    with torch.no_grad():
        want = postprocess(model.inverse(torch.from_numpy(z), y)[0], model.config.n_bits)
    step = 2 ** (8 - model.config.n_bits)
    diff = np.abs(got.astype(int) - want.permute(0, 2, 3, 1).numpy().astype(int))
    assert diff.max() <= step and (diff > 0).mean() < 0.01


def test_the_frozen_copy_computes_what_the_model_computes_and_leaves_it_alone():
    model = tiny(1, permutation="lu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = frozen_copy(model)
    x = preprocess(torch.randint(0, 256, (4, *SHAPE), dtype=torch.uint8), 8)
    with torch.no_grad():
        (z, ld), (fz, fld) = model(x), frozen(x)
        assert torch.allclose(z, fz, atol=1e-5) and torch.allclose(ld, fld, atol=1e-3)
        assert torch.allclose(frozen.inverse(fz)[0], x, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_without_the_extra_the_export_says_how_to_get_it(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(OnnxError, match=r"pip install 'glowflow\[onnx\]'"):
        export_onnx(tiny(), tmp_path)
    assert not any(tmp_path.iterdir())


def test_glowflow_export_onnx_writes_the_graphs_beside_the_pretrained_files(tmp_path):
    from conftest import main_in_process, make_run

    run = tmp_path / "run"
    _, ema = make_run(run)
    r = main_in_process("export", run, tmp_path / "out", "--onnx")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    assert (out / "model.safetensors").is_file() and "encoder.onnx, decoder.onnx" in r.stderr
    decoder = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((3, ema.num_dims)).astype(np.float32)
    images = decoder.run(None, {"z": z})[0]
    with torch.no_grad():
        want = postprocess(ema.float().inverse(torch.from_numpy(z))[0], ema.config.n_bits)
    diff = np.abs(images.astype(int) - want.permute(0, 2, 3, 1).numpy().astype(int))
    assert diff.max() <= 2 ** (8 - ema.config.n_bits)  # the run's EMA weights, as exported


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "celeba64"])
def test_every_bundled_model_runs_in_onnx_runtime_as_in_pytorch(name, tmp_path):
    """The held-out images each bundled model ships (its gallery), at the centre of their bins
    and with a random draw: bits/dim within 1e-4 of PyTorch's, and back to the images."""
    from glowflow.hub.gallery import load_gallery
    from glowflow.hub.load import load_model

    loaded = load_model(name)
    model = loaded.model.float()
    paths = export_onnx(model, tmp_path)
    enc, dec = (ort.InferenceSession(str(paths[k]), providers=["CPUExecutionProvider"])
                for k in ("encoder", "decoder"))  # fmt: skip
    gallery = load_gallery(loaded.pretrained_dir)
    images = gallery.images[:8]
    feed = {"images": images.permute(0, 2, 3, 1).numpy()}
    labels = None
    if model.config.num_classes is not None:
        labels = gallery.labels[:8].numpy().astype(np.int64)
        feed["label"] = labels
    drop = 8 - model.config.n_bits
    for noise in (
        np.full(feed["images"].shape, 0.5, np.float32),
        np.random.default_rng(0).random(feed["images"].shape, dtype=np.float32),
    ):
        z, bpd = enc.run(None, {**feed, "noise": noise})
        y = None if labels is None else torch.from_numpy(labels)
        with torch.no_grad():
            x = preprocess(images, model.config.n_bits,
                           noise=torch.from_numpy(noise).permute(0, 3, 1, 2))  # fmt: skip
            want = model.bits_per_dim(x, y).numpy()
        assert np.abs(bpd - want).max() < 1e-4, name
        back = dec.run(None, {"z": z, **({"label": labels} if labels is not None else {})})[0]
        inside = np.abs(noise - 0.5) < 0.499
        assert np.array_equal(back[inside], ((feed["images"] >> drop) << drop)[inside]), name
