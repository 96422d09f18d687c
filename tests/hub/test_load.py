"""The one loader: a run folder, a checkpoint, a pretrained folder or a name, one LoadedModel."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from conftest import assert_one_line, make_run, tiny_model

from glowflow import Glow
from glowflow.hub import checkpoint
from glowflow.hub import pretrained as pt
from glowflow.hub.load import load_model
from glowflow.hub.pretrained import PretrainedError


def test_load_model_keeps_the_weights_only(tmp_path, monkeypatch):
    """The file is read on the CPU whatever the model's device, and the optimiser's moments in
    a run's checkpoint die once the model is loaded."""
    run = tmp_path / "run"
    make_run(run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["optimizer"] = {"state": {0: {"exp_avg": torch.ones(4096)}}, "param_groups": []}
    torch.save(state, run / "checkpoint.pt")
    moments = []
    read = checkpoint.load_checkpoint

    def watched(path, map_location="cpu"):
        found = read(path, map_location)
        moments.append(weakref.ref(found["optimizer"]["state"][0]["exp_avg"]))
        assert map_location == "cpu"
        return found

    monkeypatch.setattr(checkpoint, "load_checkpoint", watched)
    loaded = load_model(run, map_location="meta")  # a device of its own, holding no data
    gc.collect()
    assert len(moments) == 1 and moments[0]() is None
    assert loaded.step == 3
    assert {p.device.type for p in loaded.model.parameters()} == {"meta"}


def test_load_model_reads_runs_checkpoints_and_pretrained_folders(tmp_path, bundled):
    run = tmp_path / "run"
    raw, ema = make_run(run)
    _, x = tiny_model()
    for spec, source in ((run, "run"), (run / "checkpoint.pt", "checkpoint"), (str(run), "run")):
        loaded = load_model(spec)
        assert loaded.step == 3 and loaded.attr_names == ["Smiling"]
        assert loaded.source == source and loaded.weights_file == run / "checkpoint.pt"
        assert loaded.pretrained_dir is None and loaded.card is None
        assert isinstance(loaded.model, Glow)
        with torch.no_grad():
            assert torch.equal(loaded.model.log_prob(x), ema.log_prob(x))
    model = load_model(run, ema=False).model
    with torch.no_grad():
        assert torch.equal(model.log_prob(x), raw.log_prob(x))

    folder = pt.save_pretrained(ema, tmp_path / "m", metadata={"class_names": ["a", "b"]})
    loaded = load_model(folder)
    assert loaded.pretrained_dir == folder and loaded.class_names == ["a", "b"]
    assert loaded.step is None and not loaded.model.training and loaded.source == "pretrained"
    assert loaded.weights_file == folder / pt.WEIGHTS_FILE
    assert loaded.card == (folder / "README.md").read_text()

    pt.save_pretrained(ema, bundled / "mnist")
    loaded = load_model("mnist")
    assert loaded.pretrained_dir == bundled / "mnist" and loaded.source == "bundled"

    (tmp_path / "other").mkdir()
    with pytest.raises(PretrainedError) as e:
        load_model(tmp_path / "other")
    assert_one_line(e, "checkpoint.pt", pt.WEIGHTS_FILE)
