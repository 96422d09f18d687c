"""The wheel: the bundled models are inside it, and it stays small enough to ship."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ("mnist", "celeba64", "fashion-mnist")
MAX_WHEEL_MB = 30


@pytest.mark.slow
def test_the_wheel_carries_the_bundled_models_and_stays_under_30_mb(tmp_path):
    # built from a copy without the checkout's build outputs, which setuptools would reuse
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        "build", "dist", ".venv", ".git", "*.egg-info", "__pycache__", "runs"))  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("glowflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in BUNDLED:
        for file in ("config.json", "model.safetensors", "README.md"):
            assert f"glowflow/models/{model}/{file}" in names, (model, file)
    assert "glowflow/models/celeba64/attributes.safetensors" in names
    for model in BUNDLED:
        assert f"glowflow/models/{model}/gallery.npz" in names
    for page in ("index.html", "explorer.js", "explorer.css"):
        assert f"glowflow/explorer/static/{page}" in names
    modules = {n for n in names if n.startswith("glowflow/") and n.endswith(".py")}
    assert modules == {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "glowflow").rglob("*.py")
    }  # every module of the package, and no other
    assert "glowflow/assets/mnist_mini.npz" in names
    size_mb = wheel.stat().st_size / 2**20
    assert size_mb < MAX_WHEEL_MB, f"the wheel is {size_mb:.1f} MB"


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_models_load_by_name_and_never_reinitialise(name):
    import torch

    from glowflow import Glow, preprocess
    from glowflow.hub.names import bundled_models

    assert name in bundled_models()
    model = Glow.from_pretrained(name)
    assert model.is_initialized and not model.training
    c, h, w = model.config.image_shape
    images = torch.randint(0, 2**model.config.n_bits, (2, c, h, w), dtype=torch.uint8)
    x = preprocess(images * 2 ** (8 - model.config.n_bits), model.config.n_bits,
                   dequantize=False, dtype=torch.float32).to(torch.get_default_dtype())  # fmt: skip
    model = model.to(torch.get_default_dtype())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bpd = model.bits_per_dim(x)
    assert torch.isfinite(bpd).all()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_importing_glowflow_stays_cheap():
    code = ("import sys, glowflow, glowflow.cli; glowflow.cli.build_parser(); "
            "print(sorted(m for m in ('torch._dynamo', 'matplotlib', 'huggingface_hub', "
            "'starlette', 'uvicorn', 'cv2') if m in sys.modules))")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_public_names_resolve_where_the_readme_shows_them():
    import glowflow
    import glowflow.ood

    for name in glowflow.__all__:
        assert getattr(glowflow, name) is not None, name
    assert issubclass(glowflow.Glow, glowflow.GlowFlow)
    for method in ("from_pretrained", "save_pretrained", "push_to_hub", "from_config"):
        assert callable(getattr(glowflow.Glow, method)), method
    assert callable(glowflow.ood.detect) and callable(glowflow.ood.score_images)
    assert callable(glowflow.checkpoint.model_from_checkpoint)
    assert glowflow.load_model is glowflow.hub.load_model
    assert isinstance(glowflow.__version__, str)


def test_the_memory_format_is_a_config_choice_not_a_side_effect_of_the_build():
    import torch

    import glowflow

    def layout(fmt: str) -> bool:
        model = glowflow.Glow((1, 8, 8), levels=1, depth=1, hidden_channels=4, memory_format=fmt)
        weight = model.levels[0].steps[0].coupling.net.conv1.weight
        return (
            weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        )

    assert layout("channels_last") and not layout("contiguous")
    assert layout("auto") == torch.backends.mkldnn.is_available()
    with pytest.raises(glowflow.errors.ConfigError, match="memory_format must be one of"):
        glowflow.GlowConfig((1, 8, 8), levels=1, memory_format="nhwc")
