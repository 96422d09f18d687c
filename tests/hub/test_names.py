"""Naming a model: bundled names, local folders, Hub names (hf:user/repo), downloads and
pushes."""

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


def test_resolution_local_then_bundled_and_hub_only_when_named(tmp_path, bundled, monkeypatch):
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

    # A Hub name goes through the download function, never the network.
    calls = []

    def download(repo_id: str) -> Path:
        calls.append(repo_id)
        snapshot = tmp_path / "hub-cache" / repo_id.replace("/", "--")
        return pt.save_pretrained(model, snapshot, dtype=torch.float64)

    loaded = Glow.from_pretrained("hf:someone/glow-mnist", download=download)
    assert calls == ["someone/glow-mnist"]
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))


def test_unknown_name_lists_the_bundled_models(bundled):
    model, _ = tiny_model()
    pt.save_pretrained(model, bundled / "mnist")
    pt.save_pretrained(model, bundled / "celeba64")
    with pytest.raises(PretrainedError) as e:
        Glow.from_pretrained("no-such-model")
    assert_one_line(
        e, "'no-such-model'", "no such local path", "bundled: celeba64, mnist", "hf:user/repo"
    )


def test_a_folder_without_weights_is_not_a_model(tmp_path, bundled):
    (tmp_path / "data").mkdir()
    with pytest.raises(PretrainedError) as e:
        names.resolve_pretrained(tmp_path / "data")
    assert_one_line(e, "data", "not a pretrained folder", pt.WEIGHTS_FILE)


def test_hub_id_without_huggingface_hub_names_the_extra(bundled, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(PretrainedError) as e:
        Glow.from_pretrained("hf:someone/glow-mnist")
    assert_one_line(e, "someone/glow-mnist", "pip install 'glowflow[hub]'")


def test_hub_repo_without_weights_is_refused(tmp_path, bundled):
    (tmp_path / "snapshot").mkdir()
    with pytest.raises(PretrainedError) as e:
        names.resolve_pretrained("hf:someone/other", download=lambda repo: tmp_path / "snapshot")
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
    loaded = Glow.from_pretrained("hf:someone/glow", revision="v2", cache_dir=tmp_path / "c")
    assert calls == [("someone/glow", "v2", str(tmp_path / "c"))]
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))
    found = load_model("hf:someone/glow", revision="v1")
    assert found.source == "hub" and found.pretrained_dir == tmp_path / "snap" / "v1"
    assert calls[-1] == ("someone/glow", "v1", None)
    # the revision may be part of the name, but not two different ones at once
    assert load_model("hf:someone/glow@v3").pretrained_dir == tmp_path / "snap" / "v3"
    assert calls[-1] == ("someone/glow", "v3", None)
    with pytest.raises(PretrainedError) as e:
        load_model("hf:someone/glow@v3", revision="v1")
    assert_one_line(e, "'v3'", "'v1'", "give one")


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
    assert 'from_pretrained("hf:someone/glow-digits")' in seen["card"]
    assert "glowflow sample --checkpoint hf:someone/glow-digits " in seen["card"]
    assert "# glow-digits" in seen["card"]


def test_a_missing_local_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch, bundled):
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    calls = []
    with pytest.raises(PretrainedError) as e:
        names.resolve_pretrained("runs/typo", download=calls.append)
    assert_one_line(e, "no such local path 'runs/typo'", "hf:runs/typo")
    assert calls == []
    (tmp_path / "mnist").mkdir()  # a local folder of that name wins over the bundled model
    with pytest.raises(PretrainedError, match="not a pretrained folder"):
        names.resolve_pretrained("mnist")


def _no_network(monkeypatch) -> None:
    """Make every way to the Hub fail the test: the download and huggingface_hub itself."""

    def refuse(*args, **kwargs):
        pytest.fail(f"a local name went to the Hub: {args}")

    monkeypatch.setattr(names, "_download", refuse)
    hub = types.SimpleNamespace(snapshot_download=refuse, HfApi=refuse)
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)


def _refuse(repo_id: str) -> Path:
    pytest.fail(f"a local name went to the downloader: {repo_id}")


def test_a_repo_shaped_name_that_is_not_on_disk_never_goes_to_the_network(
    tmp_path, monkeypatch, bundled
):
    """``runs/x`` from a folder without ``runs``: the shape of a Hub repo id, and of the
    command line's own run folders. It is a missing local path, for every loader."""
    monkeypatch.chdir(tmp_path)  # holds no runs folder
    _no_network(monkeypatch)
    missing = str(tmp_path / "runs" / "x")
    loaders = [
        lambda: names.resolve_pretrained("runs/x"),
        lambda: names.resolve_pretrained("runs/x", download=_refuse),
        lambda: Glow.from_pretrained("runs/x"),
        lambda: Glow.from_pretrained("runs/x", download=_refuse, revision="v1"),
        lambda: load_model("runs/x"),
        lambda: load_model("runs/x", download=_refuse),
    ]
    for load in loaders:
        with pytest.raises(PretrainedError) as e:
            load()
        assert_one_line(e, "no such local path 'runs/x'", f"nothing at {missing}", "hf:runs/x")
    with pytest.raises(PretrainedError) as e:  # not a repo id: the general form is named
        load_model("./runs/x", download=_refuse)
    assert_one_line(e, "no such local path './runs/x'", "hf:user/repo")


def test_an_hf_name_always_means_the_hub_and_a_bundled_name_stays_local(
    tmp_path, monkeypatch, bundled
):
    model, x = tiny_model()
    pt.save_pretrained(model, bundled / "mnist")
    monkeypatch.chdir(tmp_path)
    # even where a local path of that spelling exists, hf: names the Hub
    pt.save_pretrained(model, tmp_path / "hf:user" / "repo")
    calls = []

    def download(repo_id: str) -> Path:
        calls.append(repo_id)
        folder = tmp_path / "snap" / repo_id.replace("/", "--")
        return pt.save_pretrained(model, folder, dtype="float64")

    found = load_model("hf:user/repo", download=download)
    assert calls == ["user/repo"] and found.source == "hub"
    assert found.pretrained_dir == tmp_path / "snap" / "user--repo"
    assert names.resolve_pretrained("hf:user/repo", download=download) == found.pretrained_dir
    with torch.no_grad():
        loaded = Glow.from_pretrained("hf:user/repo", download=download)
        assert torch.equal(loaded.log_prob(x), model.log_prob(x))
    assert calls == ["user/repo"] * 3

    _no_network(monkeypatch)  # a bundled name is read bare, from the package
    assert load_model("mnist", download=_refuse).source == "bundled"
    assert names.resolve_pretrained("mnist", download=_refuse) == bundled / "mnist"


MALFORMED = ["hf:", "hf:repo", "hf:user/", "hf:/repo", "hf:a/b/c", "hf:user/repo@",
             "hf:user/repo@v 1", "hf:user repo/x"]  # fmt: skip


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_hub_name_is_refused_in_one_line(name, bundled, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(PretrainedError) as e:
        load_model(name, download=_refuse)
    assert_one_line(e, repr(name), "not a Hub model name", "hf:user/repo@revision")


def test_push_to_hub_takes_the_hf_form_too(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    model, _ = tiny_model()
    folder = pt.save_pretrained(model, tmp_path / "m")
    api = FakeApi()
    assert names.push_to_hub(folder, "hf:someone/glow", api=api) == (
        "https://huggingface.co/someone/glow"
    )
    assert api.calls[0][1] == ("someone/glow",) and api.calls[1][2]["repo_id"] == "someone/glow"
    for bad in ("hf:someone/glow@v1", "hf:glow", "someone"):
        with pytest.raises(PretrainedError) as e:
            names.push_to_hub(folder, bad, api=FakeApi())
        assert_one_line(e, repr(bad), "user/repo or hf:user/repo")
