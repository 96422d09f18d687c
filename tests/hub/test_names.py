"""Naming a model: bundled names, local folders, Hub ids, downloads and pushes."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line, tiny_model

from glowflow import Glow
from glowflow.hub import names
from glowflow.hub import pretrained as pt
from glowflow.hub.load import load_model
from glowflow.hub.pretrained import PretrainedError


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


def test_importing_the_modules_does_not_import_huggingface_hub():
    # in a new process, so this one's modules stay the ones every other test holds
    code = ("import sys, glowflow.hub.pretrained, glowflow.hub.names, glowflow.hub.load; "
            "print('huggingface_hub' in sys.modules)")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


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
