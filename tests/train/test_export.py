"""A run folder -> a pretrained folder, its card filled from the run."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_one_line, make_run, tiny_model
from safetensors.torch import load

from glowflow import Glow
from glowflow.hub import pretrained as pt
from glowflow.hub.pretrained import PretrainedError
from glowflow.train.export import export_run


def test_export_run_writes_a_loadable_folder_with_the_runs_facts(tmp_path):
    run = tmp_path / "run"
    _, ema = make_run(run)
    _, x = tiny_model()
    out = export_run(run, tmp_path / "export", card={"license": "mit"})

    stored = load((out / pt.WEIGHTS_FILE).read_bytes())  # the EMA weights, in float32
    assert all(torch.equal(stored[k], v.float()) for k, v in ema.state_dict().items())
    loaded = Glow.from_pretrained(out)
    with torch.no_grad():
        assert torch.allclose(loaded.log_prob(x), ema.log_prob(x), rtol=1e-5)
    meta = json.loads((out / "config.json").read_text())["glowflow"]
    assert meta["step"] == 3 and meta["attr_names"] == ["Smiling"]

    card = (out / "README.md").read_text()
    assert "- Steps: 3" in card and "- Wall time: 1.5 minutes" in card
    assert "- Data set: npz:data/faces.npz" in card and "license: mit" in card
    assert "5.432" in card and "- Number of held-out images: 6" in card
    command = (
        "glowflow train --dataset npz:data/faces.npz --hflip --levels 2 --depth 2 "
        "--hidden-channels 8 --steps 3"
    )
    assert f"`{command}`" in card

    # Exporting again replaces the pretrained folder; the caller's facts win over the run's.
    export_run(run, out, dtype="float16", card={"steps": 1234})
    assert "- Steps: 1234" in (out / "README.md").read_text()
    assert json.loads((out / "config.json").read_text())["glowflow"]["dtype"] == "float16"


def test_export_run_errors(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    with pytest.raises(PretrainedError) as e:
        export_run(run, tmp_path / "out", dtype="float64")
    assert_one_line(e, "float16", "float32")
    with pytest.raises(PretrainedError) as e:
        export_run(run, run)
    assert_one_line(e, str(run))
    with pytest.raises(PretrainedError) as e:
        export_run(tmp_path / "nowhere", tmp_path / "out")
    assert_one_line(e, "checkpoint.pt")
    assert not (tmp_path / "out").exists()


def test_the_card_names_each_figures_dimensions_padding_and_draws(tmp_path):
    """Held-out and test figures on the card: over the model's input and over the pixels
    before padding, one draw, and the test set importance-weighted over K draws."""
    import numpy as np

    from glowflow.data.evaluate import evaluate_bits
    from glowflow.hub.checkpoint import model_from_checkpoint
    from glowflow.train.export import export_with_figures

    run = tmp_path / "run"
    make_run(run)  # a (3, 8, 8) model, trained (as far as the card knows) unpadded
    raw = np.random.default_rng(0).integers(0, 256, (10, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "small.npz", x=raw)  # 6x6 images: padded by 1 to fit the model
    comparison = "| model | bits/dim |\n|---|---|\n| theirs | 1.00 |"
    out, measured = export_with_figures(
        run, tmp_path / "out", card={"comparison": comparison},
        heldout=f"npz:{tmp_path / 'small.npz'}", heldout_description="ten images",
        test=f"npz:{tmp_path / 'small.npz'}", test_samples=4,
    )  # fmt: skip
    padded = torch.nn.functional.pad(torch.from_numpy(raw).permute(0, 3, 1, 2), (1, 1, 1, 1))
    shipped = model_from_checkpoint(run, "cpu", ema=True)[0]  # the EMA weights, as exported
    one = evaluate_bits(shipped, padded)
    four = evaluate_bits(shipped, padded, samples=4)
    assert measured["heldout_bpd"] == pytest.approx(one.bpd, abs=1e-4)
    assert measured["heldout_bpd_original"] == pytest.approx(one.bits_per_image / 108, abs=1e-4)
    assert measured["test_bpd_iw"] == pytest.approx(four.bpd, abs=1e-4)
    assert (measured["dims"], measured["original_dims"], measured["test_samples"]) == (192, 108, 4)
    card = (out / "README.md").read_text()
    held = f"{measured['heldout_bpd']:.4f} over the model's 192 input dimensions; "
    held += f"{measured['heldout_bpd_original']:.4f} over the 108 pixels before padding "
    assert f"- Bits per dimension on the held-out images: {held}(one dequantisation draw" in card
    assert "- Test images (reported only: nothing was trained, chosen or tuned on them)" in card
    iw = f"importance-weighted over 4 draws: {measured['test_bpd_iw']:.4f} over the model's 192"
    assert iw in card and "(4 dequantisation draws an image)" in card
    assert "## Beside published results\n\n| model | bits/dim |" in card


def test_a_warm_started_runs_command_names_the_model_it_started_from():
    from glowflow.train.export import train_command

    train = {"dataset": "npz:faces.npz", "init_from": "celeba64", "steps": 10}
    assert train_command(train) == (
        "glowflow train --dataset npz:faces.npz --steps 10 --init-from celeba64"
    )
    assert "--init-from" not in train_command({"dataset": "npz:faces.npz", "steps": 10})
