"""Naming a pretrained model: a local folder, a model bundled with the package, or a model on
the Hugging Face Hub; downloading from the Hub and pushing to it.

``resolve_pretrained`` reads a name so: ``hf:user/repo`` (or ``hf:user/repo@revision``)
always names a Hub repo (``glowflow.hub.hubname``); anything else is local, a folder (an
existing path always wins) or else a model bundled inside the package
(``glowflow/models/<name>/``). Only an ``hf:`` name goes to the network: a missing local path
such as ``runs/x`` is refused as one, never taken for a repo. ``huggingface_hub`` is an
optional extra (``glowflow[hub]``), imported only by the functions that talk to the Hub.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from glowflow.errors import first_line
from glowflow.hub.hubname import HUB_PREFIX, REPO_ID, is_hub_name, parse_hub_name
from glowflow.hub.pretrained import (
    CONFIG_FILE,
    HUB_FILES,
    WEIGHTS_FILE,
    PathLike,
    PretrainedError,
    is_pretrained,
    one_line,
)
from glowflow.version import __version__

HUB_EXTRA = "pip install 'glowflow[hub]'"


def bundled_root() -> Path:
    """The folder of the models that ship inside the package (it may not exist)."""
    return Path(str(resources.files("glowflow") / "models"))


def bundled_models() -> list[str]:
    """Names of the bundled models: the folders of ``bundled_root`` holding weights."""
    root = bundled_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_pretrained(p))


def _import_hub(what: str) -> ModuleType:
    try:
        import huggingface_hub
    except ImportError:
        raise PretrainedError(f"{what} needs the hub extra: {HUB_EXTRA}") from None
    return huggingface_hub


def _download(repo_id: str, revision: str | None, cache_dir: PathLike | None) -> Path:
    """The snapshot of a Hub repo's pretrained files, from the local cache or the network."""
    hub = _import_hub(f"downloading {repo_id} from the Hugging Face Hub")
    try:
        folder = hub.snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=None if cache_dir is None else str(Path(cache_dir).expanduser()),
            allow_patterns=list(HUB_FILES),
            library_name="glowflow",
            library_version=__version__,
        )
    except Exception as e:  # network, authentication and not-found errors come in many types
        raise PretrainedError(
            f"cannot download {repo_id} from the Hugging Face Hub ({one_line(first_line(e))}); "
            f"check the repo id, your connection, or log in with `hf auth login`"
        ) from None
    return Path(folder)


def resolve_pretrained(
    name_or_path: PathLike,
    download: Callable[[str], Path] | None = None,
    *,
    revision: str | None = None,
    cache_dir: PathLike | None = None,
) -> Path:
    """The local folder of a pretrained model named by a path, a bundled name or a Hub name.

    - ``hf:user/repo`` or ``hf:user/repo@revision`` always names a Hugging Face Hub repo,
      fetched with ``download(repo_id)`` if given, else ``huggingface_hub.snapshot_download``
      at the name's revision or ``revision`` (a branch, tag or commit; default the main
      branch) into ``cache_dir`` (default the Hub's own cache).
    - Any other name is local: an existing folder holding ``model.safetensors``, else a
      bundled model (see ``bundled_models``). A name that is neither is refused as a
      missing local path, even one shaped like ``user/repo``: it never reaches the network.
    """
    name = str(name_or_path)
    if is_hub_name(name):
        return _from_hub(name, download, revision, cache_dir)
    path = Path(name).expanduser()
    bundled = bundled_models()
    listed = ", ".join(bundled) if bundled else "none"
    if path.exists():  # an existing path always wins, as in load_model
        if path.is_dir() and is_pretrained(path):
            return path
        raise PretrainedError(
            f"{one_line(name)} is not a pretrained folder (it holds no {WEIGHTS_FILE}); pass "
            f"a folder written by save_pretrained, a bundled model ({listed}) or a Hub model "
            f"{HUB_PREFIX}user/repo"
        )
    if name in bundled:
        return bundled_root() / name
    raise PretrainedError(_missing_name(name, listed))


def _missing_name(name: str, bundled: str) -> str:
    """The one-line error for a name that is no local path and no bundled model (``bundled``:
    their names), pointing to the explicit Hub form."""
    nothing = f"nothing at {Path(name).expanduser().absolute()}"
    if "/" in name or os.sep in name:  # a path, not a bundled model's name
        hub = HUB_PREFIX + (name if REPO_ID.match(name) else "user/repo")
        return (
            f"no such local path {one_line(name)!r} ({one_line(nothing)}); for a model on "
            f"the Hugging Face Hub write {hub}"
        )
    return (
        f"no model named {one_line(name)!r}: no such local path ({one_line(nothing)}) and no "
        f"bundled model (bundled: {bundled}); for a model on the Hugging Face Hub write "
        f"{HUB_PREFIX}user/repo"
    )


def _from_hub(
    name: str,
    download: Callable[[str], Path] | None,
    revision: str | None,
    cache_dir: PathLike | None,
) -> Path:
    """The folder of the Hub name ``name`` (``hf:user/repo[@revision]``), downloaded."""
    parsed = parse_hub_name(name)
    if parsed is None:
        raise PretrainedError(
            f"{one_line(name)!r} is not a Hub model name; write {HUB_PREFIX}user/repo or "
            f"{HUB_PREFIX}user/repo@revision"
        )
    repo_id, named = parsed
    if named is not None and revision is not None and named != revision:
        raise PretrainedError(
            f"{one_line(name)} names revision {one_line(named)!r} and revision="
            f"{one_line(revision)!r} was also given; give one of them"
        )
    if download is not None:
        folder = Path(download(repo_id))
    else:
        folder = _download(repo_id, named or revision, cache_dir)
    if not is_pretrained(folder):
        raise PretrainedError(
            f"the Hub repo {repo_id} holds no {WEIGHTS_FILE}; is it a glowflow model "
            f"written by save_pretrained?"
        )
    return folder


def push_to_hub(
    directory: PathLike,
    repo_id: str,
    *,
    api: Any = None,
    private: bool = False,
    commit_message: str = "Upload glowflow model",
    token: str | None = None,
) -> str:
    """Upload a pretrained folder to the Hugging Face Hub repo ``repo_id`` (created if new).

    ``repo_id`` is ``user/repo`` (nothing but a Hub repo is meant here), or ``hf:user/repo``,
    the explicit form that loading needs. Only the pretrained files are sent. ``api`` is a
    ``huggingface_hub.HfApi`` (default: a new one with ``token``, else the token of
    ``hf auth login``).

    Returns:
        The repo's address.
    """
    directory = Path(directory).expanduser()
    for f in (WEIGHTS_FILE, CONFIG_FILE):
        if not (directory / f).is_file():
            raise PretrainedError(
                f"{directory / f} is missing; push a folder written by save_pretrained"
            )
    given = repo_id
    repo_id = repo_id[len(HUB_PREFIX) :] if is_hub_name(repo_id) else repo_id
    if not REPO_ID.match(repo_id):
        raise PretrainedError(
            f"{one_line(given)!r} is not a Hub repo id; write it user/repo or hf:user/repo"
        )
    if api is None:
        api = _import_hub(f"pushing {directory} to the Hugging Face Hub").HfApi(token=token)
    try:
        api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(directory),
            commit_message=commit_message,
            allow_patterns=list(HUB_FILES),
        )
    except Exception as e:  # network and permission errors come in many types
        raise PretrainedError(
            f"cannot push {directory} to {repo_id} ({one_line(first_line(e))}); check the "
            f"repo id and that you are logged in with write access (`hf auth login`)"
        ) from None
    return f"https://huggingface.co/{repo_id}"
