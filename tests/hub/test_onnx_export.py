"""ONNX export: each option's tiny model as two graphs that ONNX Runtime runs like PyTorch, with
no matrix inverse or determinant in them, exact round trips at the model's bit depth."""

from __future__ import annotations

from pathlib import Path

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
    import importlib.util

    real = importlib.util.find_spec

    def no_onnxscript(name, *args):
        return None if name == "onnxscript" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_onnxscript)
    with pytest.raises(OnnxError, match=r"pip install 'glowflow\[onnx\]'"):
        export_onnx(tiny(), tmp_path)
    assert not any(tmp_path.iterdir())
    from conftest import assert_one_line_error, main_in_process

    r = main_in_process("export", "mnist", tmp_path / "out", "--onnx")
    assert_one_line_error(r, "needs the onnx extra")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_the_graphs_name_the_model_they_hold_config_and_weights():
    from glowflow.hub.onnx_export import weights_digest

    a, b = tiny(0, n_bits=8), tiny(0, n_bits=5)  # the same weights, other bins
    assert weights_digest(a) != weights_digest(b)
    assert weights_digest(a) == weights_digest(tiny(0, n_bits=8))
    with torch.no_grad():
        next(a.parameters()).add_(1e-6)
    assert weights_digest(a) != weights_digest(tiny(0, n_bits=8))


def test_exporting_another_model_into_a_folder_leaves_nothing_of_the_first(
    bundled_export, tmp_path
):
    """celeba64's export (graphs, directions, gallery, attributes), then a tiny model without
    any of those exported into the same folder: only the tiny model's files are left."""
    import shutil

    from conftest import main_in_process

    out, tiny_dir = tmp_path / "out", tmp_path / "tiny"
    shutil.copytree(bundled_export("celeba64"), out)
    assert (out / "directions.npz").is_file() and (out / "gallery.npz").is_file()
    model = tiny(2)
    model.save_pretrained(tiny_dir)
    r = main_in_process("export", tiny_dir, out, "--onnx")
    assert r.returncode == 0, r.stderr
    for gone in ("directions.npz", "attributes.safetensors", "gallery.npz"):
        assert not (out / gone).exists(), gone
    assert (out / "model.safetensors").read_bytes() == (tiny_dir / "model.safetensors").read_bytes()
    meta = {e.key: e.value for e in onnx.load(str(out / "decoder.onnx")).metadata_props}
    assert meta["image_shape"] == "3,8,8"


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


@pytest.fixture(scope="module")
def bundled_export(tmp_path_factory):
    """``glowflow export NAME OUT --onnx`` of each bundled model, once a module."""
    from conftest import main_in_process

    made = {}

    def export(name: str) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp(f"{name}-onnx")
            r = main_in_process("export", name, out, "--onnx")
            assert r.returncode == 0, r.stderr
            assert "warning" not in r.stderr, r.stderr  # the exporter's notes stay quiet
            made[name] = out
        return made[name]

    return export


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "celeba64"])
def test_every_bundled_model_runs_in_onnx_runtime_as_in_pytorch(name, bundled_export):
    """``glowflow export NAME --onnx`` of each bundled model: beside copies of its pretrained
    files, graphs that give, on the held-out images it ships (its gallery), at the centre of
    their bins and with a random draw, bits/dim within 1e-4 of PyTorch's, and the images back."""
    from glowflow.hub.gallery import load_gallery
    from glowflow.hub.load import load_model
    from glowflow.hub.pretrained import HUB_FILES

    loaded = load_model(name)
    out = bundled_export(name)
    for file in HUB_FILES:
        source = loaded.pretrained_dir / file
        assert not source.exists() or (out / file).read_bytes() == source.read_bytes(), file
    model = loaded.model.float()
    enc, dec = (ort.InferenceSession(str(out / f"{k}.onnx"), providers=["CPUExecutionProvider"])
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


def test_the_directions_file_holds_the_shipped_directions(bundled_export):
    from glowflow.hub.load import load_model

    shipped = load_model("celeba64").shipped_directions()
    saved = np.load(bundled_export("celeba64") / "directions.npz")
    assert list(saved["names"]) == shipped["names"]
    assert saved["directions"].dtype == np.float32
    assert np.array_equal(saved["directions"], shipped["directions"].numpy())
    assert not (bundled_export("mnist") / "directions.npz").exists()  # it ships none


HIDE_TORCH = """
import importlib.abc, runpy, sys

class Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "glowflow"):
            raise ImportError(f"{name} is hidden from this script")
        return None

sys.meta_path.insert(0, Hidden())
runpy.run_path(sys.argv[1], run_name="__main__")
assert not any(m.split(".")[0] in ("torch", "glowflow") for m in sys.modules)
"""


def readme_block(marker: str) -> str:
    """The Python block of the export page (docs/export.md) that starts with the line
    ``marker``."""
    readme = (Path(__file__).parents[2] / "docs" / "export.md").read_text(encoding="utf-8")
    start = readme.index(f"```python\n{marker}\n") + len("```python\n")
    return readme[start : readme.index("```", start)]


def test_the_readmes_torch_free_script_smiles_a_face_with_onnxruntime_alone(
    bundled_export, tmp_path
):
    """The export page's script, run as written with torch and glowflow unimportable, on a held-out
    face: it prints the face's bits/dim and saves the face less smiling, as it is (exactly, at
    the model's 5 bits) and more smiling, as PyTorch's own edit gives them."""
    import subprocess
    import sys

    from PIL import Image

    from glowflow.hub.gallery import load_gallery
    from glowflow.hub.load import load_model
    from glowflow.latent.latents import manipulate_images

    loaded = load_model("celeba64")
    face = load_gallery(loaded.pretrained_dir).images[:1]
    (tmp_path / "celeba64-onnx").symlink_to(bundled_export("celeba64"))
    Image.fromarray(face[0].permute(1, 2, 0).numpy()).save(tmp_path / "face.png")
    marker = '# torch-free: move a face along the "Smiling" direction with ONNX Runtime'
    (tmp_path / "script.py").write_text(readme_block(marker))
    (tmp_path / "hide.py").write_text(HIDE_TORCH)
    r = subprocess.run([sys.executable, "hide.py", "script.py"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    model = loaded.model.float()
    with torch.no_grad():
        bpd = model.bits_per_dim(preprocess(face, 5, dequantize=False)).item()
    assert r.stdout.strip() == f"{bpd:.3f} bits/dim"
    row = np.asarray(Image.open(tmp_path / "smiling.png"))
    panels = np.split(row, 3, axis=1)
    assert np.array_equal(panels[1], (face[0].permute(1, 2, 0).numpy() >> 3) << 3)
    smiling = loaded.shipped_directions()["directions"][
        loaded.shipped_directions()["names"].index("Smiling")]  # fmt: skip
    want = manipulate_images(model, face, smiling, [-1.0, 0.0, 1.0])[0]  # (3, C, H, W)
    for got, expected in zip(panels, want):
        diff = np.abs(got.astype(int) - expected.permute(1, 2, 0).numpy().astype(int))
        assert diff.max() <= 8 and (diff > 0).mean() < 0.01  # one 5-bit bin, rarely


@pytest.mark.parametrize("extra", [[], ["--onnx", "--heldout", "npz:x.npz"]])
def test_a_model_that_is_not_a_run_exports_to_onnx_alone(extra, tmp_path):
    from conftest import assert_one_line_error, main_in_process

    r = main_in_process("export", "mnist", tmp_path / "out", *extra)
    assert_one_line_error(r, "mnist is not a run folder", "--onnx alone")
    assert not (tmp_path / "out").exists()
