"""Pretrained folders: exact round trips, strict loading, naming, the Hub and run export."""

from __future__ import annotations

import gc
import importlib
import json
import struct
import sys
import types
import weakref
from pathlib import Path

import pytest
import torch
from conftest import randomize_
from safetensors.torch import load, save_file

from glowflow import Glow, preprocess
from glowflow.config import TrainConfig
from glowflow.errors import GlowflowError
from glowflow.hub import checkpoint, names
from glowflow.hub import pretrained as pt
from glowflow.hub.checkpoint import save_checkpoint
from glowflow.hub.export import export_run
from glowflow.hub.load import load_model
from glowflow.hub.pretrained import PretrainedError


def tiny_model(seed: int = 0, **kw) -> tuple[Glow, torch.Tensor]:
    """A tiny model moved away from its identity-like init, actnorm initialised, and a batch."""
    torch.manual_seed(seed)
    options = {"image_shape": (3, 8, 8), "levels": 2, "depth": 2, "hidden_channels": 8, **kw}
    model = randomize_(Glow(**options), scale=0.05, seed=seed)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    x = preprocess(images, n_bits=8, dtype=next(model.parameters()).dtype)
    model.initialize(x)
    return model.eval(), x


def payload_bytes(path: Path) -> int:
    """Bytes of tensor data in a safetensors file: its size less the 8-byte length and header."""
    with open(path, "rb") as f:
        (header,) = struct.unpack("<Q", f.read(8))
    return path.stat().st_size - 8 - header


def assert_one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message, message
    assert isinstance(error.value, GlowflowError) and isinstance(error.value, ValueError)
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture
def bundled(tmp_path, monkeypatch) -> Path:
    """An empty folder standing in for the package's bundled models."""
    root = tmp_path / "bundled"
    monkeypatch.setattr(names, "bundled_root", lambda: root)
    return root


# ------------------------------------------------------------------------------ round trips
def test_float64_round_trip_is_exact_and_keeps_actnorm_init(tmp_path):
    model, x = tiny_model()
    assert next(model.parameters()).dtype == torch.float64  # the tests' default dtype
    folder = pt.save_pretrained(model, tmp_path / "m", dtype=torch.float64)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", pt.WEIGHTS_FILE]

    loaded = Glow.from_pretrained(folder)
    assert not loaded.training and loaded.is_initialized
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))

    # The first forward in training mode must not re-run actnorm's data-dependent init.
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    loaded.train()
    with torch.no_grad():
        loaded.log_prob(x + 0.3)
    after = loaded.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_float32_storage_is_exact_for_a_float32_model(tmp_path):
    model, x = tiny_model()
    model = model.float()
    folder = pt.save_pretrained(model, tmp_path / "m")  # float32 is the default
    assert json.loads((folder / "config.json").read_text())["glowflow"]["dtype"] == "float32"
    loaded = Glow.from_pretrained(folder).float()
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x.float()), model.log_prob(x.float()))


def test_float16_storage_halves_the_file_and_stays_close(tmp_path):
    model, x = tiny_model()
    full = pt.save_pretrained(model, tmp_path / "full", dtype="float32")
    half = pt.save_pretrained(model, tmp_path / "half", dtype=torch.float16)
    ratio = payload_bytes(half / pt.WEIGHTS_FILE) / payload_bytes(full / pt.WEIGHTS_FILE)
    assert 0.5 <= ratio < 0.52  # only actnorm's bool flags keep their size
    assert (half / pt.WEIGHTS_FILE).stat().st_size < 0.6 * (full / pt.WEIGHTS_FILE).stat().st_size

    stored = read_weights(half / pt.WEIGHTS_FILE)
    assert {t.dtype for t in stored.values()} == {torch.float16, torch.bool}
    assert json.loads((half / "config.json").read_text())["glowflow"]["dtype"] == "float16"

    loaded = Glow.from_pretrained(half)
    assert {p.dtype for p in loaded.parameters()} == {torch.get_default_dtype()}
    assert loaded.is_initialized
    with torch.no_grad():
        gap = (loaded.bits_per_dim(x) - model.bits_per_dim(x)).abs().max().item()
    assert 0 < gap < 5e-3


def test_storage_dtype_is_checked(tmp_path):
    model, _ = tiny_model()
    with pytest.raises(PretrainedError) as e:
        pt.save_pretrained(model, tmp_path / "m", dtype="bfloat16")
    assert_one_line(e, "bfloat16", "float16", "float32")
    assert not (tmp_path / "m").exists()


def test_float16_overflow_is_refused(tmp_path):
    model, _ = tiny_model()
    with torch.no_grad():
        next(model.parameters()).fill_(1e6)  # beyond float16's largest value, 65504
    with pytest.raises(PretrainedError) as e:
        pt.save_pretrained(model, tmp_path / "m", dtype="float16")
    assert_one_line(e, "not finite", "float32")


# ------------------------------------------------------------------------------ strict loading
def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, read into memory (so the file may be rewritten)."""
    return load(path.read_bytes())


def _edit_weights(folder: Path, edit) -> None:
    tensors = read_weights(folder / pt.WEIGHTS_FILE)
    edit(tensors)
    save_file(tensors, folder / pt.WEIGHTS_FILE)


def _break(folder: Path, how: str) -> str:
    """Damage a saved folder one way; returns the file the error must name."""
    weights = folder / pt.WEIGHTS_FILE
    key = sorted(read_weights(weights))[0]
    if how == "missing key":
        _edit_weights(folder, lambda t: t.pop(key))
    elif how == "unexpected key":
        _edit_weights(folder, lambda t: t.update({"extra.weight": torch.zeros(2)}))
    elif how == "wrong shape":
        _edit_weights(folder, lambda t: t.update({key: torch.zeros(*t[key].shape, 2)}))
    elif how == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif how == "pickle":
        torch.save(read_weights(weights), weights)
    elif how == "missing config":
        (folder / "config.json").unlink()
        return "config.json"
    elif how == "invalid config":
        (folder / "config.json").write_text("{not json")
        return "config.json"
    elif how == "unknown field":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "colour_depth": 3}))
        return "config.json"
    return pt.WEIGHTS_FILE


@pytest.mark.parametrize(
    "how, fragment",
    [
        ("missing key", "lacks 1 tensor"),
        ("unexpected key", "extra.weight"),
        ("wrong shape", "has shape"),
        ("truncated", "not a safetensors file"),
        ("pickle", "not a safetensors file"),
        ("missing config", "missing"),
        ("invalid config", "not valid JSON"),
        ("unknown field", "colour_depth"),
    ],
)
def test_damaged_folders_give_one_line_naming_the_file(tmp_path, how, fragment):
    model, _ = tiny_model()
    folder = pt.save_pretrained(model, tmp_path / "m")
    file = _break(folder, how)
    with pytest.raises(PretrainedError) as e:
        Glow.from_pretrained(folder)
    assert_one_line(e, str(folder / file), fragment)


def test_missing_and_wrong_shape_messages_name_the_key(tmp_path):
    model, _ = tiny_model()
    folder = pt.save_pretrained(model, tmp_path / "m")
    key = sorted(model.state_dict())[0]
    _edit_weights(folder, lambda t: t.pop(key))
    with pytest.raises(PretrainedError) as e:
        Glow.from_pretrained(folder)
    assert_one_line(e, key)


# ------------------------------------------------------------------------------ naming
def test_bundled_models_lists_only_folders_with_weights(bundled):
    assert names.bundled_models() == []  # the folder does not exist yet
    model, _ = tiny_model()
    pt.save_pretrained(model, bundled / "mnist")
    (bundled / "empty").mkdir()
    assert names.bundled_models() == ["mnist"]


def test_resolution_order_local_then_bundled_then_hub(tmp_path, bundled, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    model, x = tiny_model(seed=0)
    pt.save_pretrained(model, bundled / "mnist")
    assert names.resolve_pretrained("mnist") == bundled / "mnist"

    # A local folder of the same name wins over the bundled model.
    local, _ = tiny_model(seed=1, hidden_channels=4)
    pt.save_pretrained(local, work / "mnist")
    assert names.resolve_pretrained("mnist") == Path("mnist")
    assert Glow.from_pretrained("mnist").config.hidden_channels == 4

    # A Hub id goes through the download function, never the network.
    calls = []

    def download(repo_id: str) -> Path:
        calls.append(repo_id)
        snapshot = tmp_path / "hub-cache" / repo_id.replace("/", "--")
        return pt.save_pretrained(model, snapshot, dtype=torch.float64)

    loaded = Glow.from_pretrained("someone/glow-mnist", download=download)
    assert calls == ["someone/glow-mnist"]
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))


def test_unknown_name_lists_the_bundled_models(bundled):
    model, _ = tiny_model()
    pt.save_pretrained(model, bundled / "mnist")
    pt.save_pretrained(model, bundled / "celeba64")
    with pytest.raises(PretrainedError) as e:
        Glow.from_pretrained("no-such-model")
    assert_one_line(e, "'no-such-model'", "bundled: celeba64, mnist", "user/repo")


def test_a_folder_without_weights_is_not_a_model(tmp_path, bundled):
    (tmp_path / "data").mkdir()
    with pytest.raises(PretrainedError) as e:
        names.resolve_pretrained(tmp_path / "data")
    assert_one_line(e, "data", "not a pretrained folder", pt.WEIGHTS_FILE)


def test_hub_id_without_huggingface_hub_names_the_extra(bundled, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(PretrainedError) as e:
        Glow.from_pretrained("someone/glow-mnist")
    assert_one_line(e, "someone/glow-mnist", "pip install 'glowflow[hub]'")


def test_hub_repo_without_weights_is_refused(tmp_path, bundled):
    (tmp_path / "snapshot").mkdir()
    with pytest.raises(PretrainedError) as e:
        names.resolve_pretrained("someone/other", download=lambda repo: tmp_path / "snapshot")
    assert_one_line(e, "someone/other", pt.WEIGHTS_FILE)


def test_importing_the_modules_does_not_import_huggingface_hub(monkeypatch):
    monkeypatch.delitem(sys.modules, "huggingface_hub", raising=False)
    for module in ("glowflow.hub.pretrained", "glowflow.hub.names"):
        monkeypatch.delitem(sys.modules, module)
        importlib.import_module(module)
    assert "huggingface_hub" not in sys.modules


def test_revision_and_cache_dir_reach_the_hub_download(tmp_path, bundled, monkeypatch):
    model, x = tiny_model()
    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs["revision"], kwargs["cache_dir"]))
        return pt.save_pretrained(model, tmp_path / "snap" / kwargs["revision"], dtype="float64")

    hub = types.SimpleNamespace(snapshot_download=snapshot_download)
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    loaded = Glow.from_pretrained("someone/glow", revision="v2", cache_dir=tmp_path / "c")
    assert calls == [("someone/glow", "v2", str(tmp_path / "c"))]
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))
    found = load_model("someone/glow", revision="v1")
    assert found.source == "hub" and found.pretrained_dir == tmp_path / "snap" / "v1"
    assert calls[-1] == ("someone/glow", "v1", None)


# ------------------------------------------------------------------------------ the Hub
class FakeApi:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))

    def upload_folder(self, *args, **kwargs):
        self.calls.append(("upload_folder", args, kwargs))


def test_push_to_hub_creates_the_repo_then_uploads_the_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # an injected api needs no extra
    model, _ = tiny_model()
    folder = pt.save_pretrained(model, tmp_path / "m")
    api = FakeApi()
    url = names.push_to_hub(folder, "someone/glow-mnist", api=api, private=True)
    assert url == "https://huggingface.co/someone/glow-mnist"
    (create, c_args, c_kw), (upload, _, u_kw) = api.calls
    assert create == "create_repo" and upload == "upload_folder"
    assert c_args == ("someone/glow-mnist",) and c_kw == {"exist_ok": True, "private": True}
    assert u_kw["repo_id"] == "someone/glow-mnist"
    assert Path(u_kw["folder_path"]) == folder
    assert set(u_kw["allow_patterns"]) == set(pt.HUB_FILES)


def test_push_to_hub_errors(tmp_path, monkeypatch):
    with pytest.raises(PretrainedError) as e:
        names.push_to_hub(tmp_path, "someone/repo", api=FakeApi())
    assert_one_line(e, "model.safetensors", "save_pretrained")
    model, _ = tiny_model()
    folder = pt.save_pretrained(model, tmp_path / "m")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(PretrainedError) as e:
        names.push_to_hub(folder, "someone/repo")
    assert_one_line(e, "glowflow[hub]")


# ------------------------------------------------------------------------------ card, attributes
def test_model_card_states_the_facts_given_and_no_others(tmp_path):
    model, _ = tiny_model()
    card = {
        "name": "Glow on digits",
        "repo_id": "someone/glow-digits",
        "license": "mit",
        "dataset": "mnist-mini",
        "data_license": "CC BY-SA 3.0",
        "heldout": "MNIST training images 50,000-59,999",
        "heldout_images": 10000,
        "heldout_bpd": 1.368,
    }
    text = (pt.save_pretrained(model, tmp_path / "m", card=card) / "README.md").read_text()
    front, body = text.split("---\n")[1], text.split("---\n", 2)[2]
    assert text.startswith("---\n")
    assert "library_name: glowflow\n" in front and "license: mit\n" in front
    assert "- glow\n- normalizing-flow\n- generative\n" in front
    assert "# Glow on digits" in body
    assert "1.368" in body and "10000" in body and "CC BY-SA 3.0" in body
    assert "L=2 levels, K=2 flow steps per level, width 8, affine coupling" in body
    assert 'glowflow.Glow.from_pretrained("someone/glow-digits")' in body
    assert "glowflow sample --checkpoint someone/glow-digits" in body
    assert "Command" not in body and "Steps" not in body and "Wall time" not in body

    with pytest.raises(PretrainedError) as e:
        pt.save_pretrained(model, tmp_path / "n", card={"heldout_bdp": 1.0})
    assert_one_line(e, "heldout_bdp", "heldout_bpd")


def test_attributes_round_trip_and_stale_ones_are_removed(tmp_path):
    model, _ = tiny_model()
    attributes = {
        "names": ["Smiling", "Eyeglasses"],
        "directions": torch.randn(2, model.num_dims),
        "info": [{"positives": 3, "norm": 1.5}, {"positives": 7, "norm": 0.25}],
    }
    folder = pt.save_pretrained(model, tmp_path / "m", attributes=attributes)
    back = pt.load_attributes(folder)
    assert back["names"] == attributes["names"] and back["info"] == attributes["info"]
    assert torch.equal(back["directions"], attributes["directions"].float())

    pt.save_pretrained(model, folder)  # replaced without attributes: the old ones go
    assert pt.load_attributes(folder) is None

    wrong = {**attributes, "directions": torch.randn(2, 5)}
    with pytest.raises(PretrainedError) as e:
        pt.save_pretrained(model, folder, attributes=wrong)
    assert_one_line(e, "attributes.safetensors", f"(A, {model.num_dims})")


def test_save_refuses_a_folder_holding_other_files(tmp_path):
    model, _ = tiny_model()
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(PretrainedError) as e:
        pt.save_pretrained(model, tmp_path)
    assert_one_line(e, "notes.txt", "new or empty folder")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------ runs
def make_run(folder: Path, seed: int = 0) -> tuple[Glow, Glow]:
    """A minimal run folder: raw and EMA weights (different), config.json and summary.json."""
    model, _ = tiny_model(seed)
    ema, _ = tiny_model(seed + 10)
    data = {"class_names": None, "attr_names": ["Smiling"], "train_images": 90, "val_images": 6}
    state = {
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "step": 3,
        "elapsed": 90.0,
        "data": data,
    }
    save_checkpoint(folder / "checkpoint.pt", state)
    train = TrainConfig(
        dataset="npz:data/faces.npz", levels=2, depth=2, hidden_channels=8, steps=3, hflip=True
    ).to_dict()
    config = {"train": train, "model": model.config.to_dict(), "data": data}
    (folder / "config.json").write_text(json.dumps(config))
    summary = {"step": 3, "elapsed_s": 90.0, "val_bpd": 5.4321, "nan_skipped": 0}
    (folder / "summary.json").write_text(json.dumps(summary))
    return model, ema


def test_load_model_keeps_the_weights_only(tmp_path, monkeypatch):
    """The optimiser's moments in a run's checkpoint die once the model is loaded."""
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
        assert map_location == "cpu"  # read on the CPU whatever the model's device
        return found

    monkeypatch.setattr(checkpoint, "load_checkpoint", watched)
    loaded = load_model(run)
    gc.collect()
    assert len(moments) == 1 and moments[0]() is None
    assert loaded.step == 3


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


def test_export_run_writes_a_loadable_folder_with_the_runs_facts(tmp_path):
    run = tmp_path / "run"
    _, ema = make_run(run)
    _, x = tiny_model()
    out = export_run(run, tmp_path / "export", card={"license": "mit"})

    stored = read_weights(out / pt.WEIGHTS_FILE)  # the EMA weights, in float32
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


def test_model_push_names_the_card_after_the_repo_not_a_temporary_folder(monkeypatch):
    model, _ = tiny_model()
    seen = {}

    class ReadingApi(FakeApi):
        def upload_folder(self, **kw):
            seen["card"] = (Path(kw["folder_path"]) / "README.md").read_text()
            super().upload_folder(**kw)

    model.push_to_hub("someone/glow-digits", api=ReadingApi())
    assert 'from_pretrained("someone/glow-digits")' in seen["card"]
    assert "# glow-digits" in seen["card"]


def test_a_missing_local_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch, bundled):
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    calls = []
    with pytest.raises(PretrainedError, match="runs/typo does not exist .*no Hub id"):
        names.resolve_pretrained("runs/typo", download=calls.append)
    assert calls == []
    (tmp_path / "mnist").mkdir()  # a local folder of that name wins over the bundled model
    with pytest.raises(PretrainedError, match="not a pretrained folder"):
        names.resolve_pretrained("mnist")
