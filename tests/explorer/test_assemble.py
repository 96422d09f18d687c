"""How ``glowflow serve`` assembles an explorer: directions shipped or computed over a data set,
the gallery from the data set or the pretrained folder, the framing, and the command words."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import digits, randomize_

from glowflow import Glow
from glowflow.data.imagedata import ImageData
from glowflow.explorer.assemble import build_explorer, dataset_words, frames_faces
from glowflow.explorer.checks import ExplorerError
from glowflow.hub.gallery import save_gallery
from glowflow.hub.load import LoadedModel
from glowflow.hub.pretrained import save_pretrained


@pytest.fixture(scope="module")
def model() -> Glow:
    torch.manual_seed(0)
    m = Glow((1, 16, 16), levels=2, depth=1, hidden_channels=8).double()
    x, _ = digits(16)
    m.initialize(torch.from_numpy(x).permute(0, 3, 1, 2).double() / 256 - 0.5)
    return randomize_(m, 0.05).eval()


def labelled(n: int = 12) -> ImageData:
    x, y = digits(n)
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    return ImageData(images, torch.from_numpy(y) % 3, name="npz:d.npz")


def run_model(model, tmp_path) -> LoadedModel:
    return LoadedModel(model, "runs/a", "run", tmp_path / "checkpoint.pt")


def pretrained_model(model, tmp_path) -> LoadedModel:
    folder = tmp_path / "pretrained"
    d = torch.randn(2, model.num_dims, generator=torch.Generator().manual_seed(0))
    save_pretrained(model, folder, dtype="float64", attributes={"names": ["Smiling", "Young"],
                    "directions": d, "info": [{}, {}]})  # fmt: skip
    save_gallery(folder, labelled(3), ["a", "b", "c"], "terms")
    return LoadedModel(model, "faces", "pretrained", folder / "model.safetensors",
                       attr_names=["Smiling", "Young"], pretrained_dir=folder)  # fmt: skip


def test_a_run_edits_along_directions_computed_over_its_data_set(model, tmp_path):
    explorer = build_explorer(run_model(model, tmp_path), labelled(), "npz:d.npz", pad=0,
                              limit=12, gallery_size=4)  # fmt: skip
    assert explorer.attributes == ["class:0", "class:1", "class:2"]
    assert [e.name for e in explorer.gallery] == [f"npz:d.npz #{i}" for i in range(4)]
    info = explorer.model_info()
    assert info["checkpoint"] == info["name"] == "runs/a" and info["face_detector"] is False
    cmd = explorer.edit_command("g1", {"class:2": 1})
    assert "--dataset npz:d.npz --pad 0 --max-images 12 --images 1 --attribute class:2" in cmd
    mix = explorer.mix_command("g0", "g1", 0.5, "linear", None)
    assert "--dataset npz:d.npz --pad 0 --pairs 0,1" in mix and "--max-images" not in mix


def test_a_pretrained_model_brings_its_directions_and_gallery(model, tmp_path):
    loaded = pretrained_model(model, tmp_path)
    explorer = build_explorer(loaded)
    assert explorer.attributes == ["Smiling", "Young"]
    assert [e.name for e in explorer.gallery] == ["a", "b", "c"]
    assert explorer.model_info()["gallery_note"] == "terms"
    assert explorer.faces  # auto framing: a model with CelebA's attributes is a face model
    gallery = loaded.pretrained_dir / "gallery.npz"
    cmd = explorer.edit_command("g2", {"Young": -1})
    assert gallery.is_absolute()  # shown by its name only: the page sees no local path
    assert "--dataset npz:.../gallery.npz --images 2 --attribute Young" in cmd
    # with a data set too, the shipped directions win and the gallery is the data set's
    both = build_explorer(loaded, labelled(), gallery_size=2, framing="centre")
    assert both.attributes == ["Smiling", "Young"] and not both.faces
    assert [e.name for e in both.gallery] == ["npz:d.npz #0", "npz:d.npz #1"]
    assert "--dataset npz:d.npz --images 1 --attribute Young" in both.edit_command(
        "g1", {"Young": 1}
    )


def test_without_directions_or_gallery_the_explorer_only_samples(model, tmp_path):
    explorer = build_explorer(run_model(model, tmp_path))
    assert explorer.attributes == [] and explorer.gallery == []
    assert explorer.sample_command(1, 0.5).startswith("glowflow sample --checkpoint runs/a")


def test_the_framing_choice_and_the_data_words():
    assert frames_faces("auto", ["Male", "Smiling"]) and not frames_faces("auto", None)
    assert frames_faces("face", None) and not frames_faces("centre", ["Smiling"])
    with pytest.raises(ExplorerError, match="framing must be one of auto, face, centre"):
        frames_faces("square", None)
    assert dataset_words("mnist-mini") == ["--dataset", "mnist-mini"]
    assert dataset_words("s", image_size=32, pad=2) == ["--dataset", "s", "--image-size", "32",
                                                        "--pad", "2"]  # fmt: skip


def test_the_page_is_shown_no_local_path(model, tmp_path, monkeypatch):
    """A model, gallery and data set named by absolute paths reach the page and its command
    lines relative to the folder the server runs in, or by their last part only."""
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    data = labelled()
    secret = tmp_path / "private" / "faces.npz"
    inside = LoadedModel(model, str(here / "runs" / "a"), "run", here / "checkpoint.pt")
    explorer = build_explorer(inside, data, f"npz:{secret}", pad=0, limit=12)
    info = explorer.model_info()
    shown = [str(info), explorer.edit_command("g1", {"class:2": 1.0}),
             explorer.mix_command("g0", "g1", 0.5, "linear", None),
             explorer.sample_command(1, 0.5), str([e.name for e in explorer.gallery])]  # fmt: skip
    assert not any(str(tmp_path) in text for text in shown), shown
    assert info["checkpoint"] == str(Path("runs") / "a")  # relative: the command still runs here
    assert "--dataset npz:.../faces.npz --pad 0" in shown[1]
    assert shown[4].count("npz:.../faces.npz #") == len(explorer.gallery) > 0


@pytest.mark.parametrize("where", ["root", "home"])
def test_run_from_the_root_or_home_folder_no_path_is_shown_relative(model, tmp_path, monkeypatch,
                                                                     where):  # fmt: skip
    """From / or the home folder, a relative path would show the folders' layout."""
    from glowflow.explorer.assemble import shown

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    monkeypatch.chdir(home if where == "home" else Path(tmp_path.anchor))
    assert shown(str(home / "models" / "x")) == ".../x"
    assert shown(f"npz:{home / 'models' / 'faces.npz'}") == "npz:.../faces.npz"
    assert shown("runs/a") == "runs/a" and shown("celeba64") == "celeba64"
