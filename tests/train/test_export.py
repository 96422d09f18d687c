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
