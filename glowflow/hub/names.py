"""Naming a pretrained model: a local folder, a model bundled with the package, or a Hub repo
id; downloading from the Hugging Face Hub and pushing to it.

A name is tried in this order by :func:`resolve_pretrained`: a local folder, a model bundled
inside the package (``glowflow/models/<name>/``), then a Hub repo id ``user/repo``.
``huggingface_hub`` is an optional extra (``glowflow[hub]``), imported only by the functions
that talk to the Hub.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from glowflow.errors import first_line
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
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def bundled_root() -> Path:
    """The folder of the models that ship inside the package (it may not exist)."""
    return Path(str(resources.files("glowflow") / "models"))


def is_bundled(directory: Path) -> bool:
    """Whether ``directory`` is one of the bundled models' folders."""
    return Path(directory).parent == bundled_root()


def bundled_models() -> list[str]:
    """Names of the bundled models: the folders of :func:`bundled_root` holding weights."""
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
    """The local folder of a pretrained model named by a path, a bundled name or a Hub id.

    Tried in order: an existing folder holding ``model.safetensors``; a bundled model (see
    :func:`bundled_models`); a Hub repo id ``user/repo``, fetched with ``download(repo_id)``
    if given, else ``huggingface_hub.snapshot_download`` at ``revision`` (a branch, tag or
    commit; default the main branch) into ``cache_dir`` (default the Hub's own cache).
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    bundled = bundled_models()
    listed = ", ".join(bundled) if bundled else "none"
    if path.exists():  # an existing path always wins, as in load_model
        if path.is_dir() and is_pretrained(path):
            return path
        raise PretrainedError(
            f"{one_line(name)} is not a pretrained folder (it holds no {WEIGHTS_FILE}); pass "
            f"a folder written by save_pretrained, a bundled model ({listed}) or a Hub id"
        )
    if name in bundled:
        return bundled_root() / name
    if _HUB_ID.match(name) and path.parent.is_dir() and str(path.parent) not in ("", "."):
        raise PretrainedError(
            f"{one_line(name)} does not exist (and {path.parent} is a local folder, so it is "
            f"no Hub id); check the path"
        )
    if _HUB_ID.match(name):
        if download is not None:
            folder = Path(download(name))
        else:
            folder = _download(name, revision, cache_dir)
        if not is_pretrained(folder):
            raise PretrainedError(
                f"the Hub repo {name} holds no {WEIGHTS_FILE}; is it a glowflow model "
                f"written by save_pretrained?"
            )
        return folder
    raise PretrainedError(
        f"no model named {one_line(name)!r}: not a local folder, not a bundled model "
        f"(bundled: {listed}), and not a Hub id user/repo"
    )


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

    Only the pretrained files are sent. ``api`` is a ``huggingface_hub.HfApi`` (default: a new
    one with ``token``, else the token of ``hf auth login``).

    Returns:
        The repo's address.
    """
    directory = Path(directory).expanduser()
    for f in (WEIGHTS_FILE, CONFIG_FILE):
        if not (directory / f).is_file():
            raise PretrainedError(
                f"{directory / f} is missing; push a folder written by save_pretrained"
            )
    if not _HUB_ID.match(repo_id):
        raise PretrainedError(f"{one_line(repo_id)!r} is not a Hub repo id; write it user/repo")
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
