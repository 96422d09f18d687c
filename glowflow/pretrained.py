"""Trained models as Hugging Face Hub folders: save, load, name, push and export.

A *pretrained folder* holds

- ``config.json``: the model's :meth:`GlowConfig.to_dict` plus a ``"glowflow"`` entry (format
  name and version, the stored dtype, and metadata such as ``class_names``, ``attr_names``
  and ``step``);
- ``model.safetensors``: every tensor of the model's ``state_dict()``, buffers included, so
  actnorm's ``initialized`` flag travels and a loaded model never re-initialises;
- ``README.md``: the model card, with the Hub's YAML front matter;
- optionally ``attributes.safetensors``: attribute directions in the flat latent
  (``directions`` of shape ``(A, D)``, their names and summaries in the file's metadata);
- optionally ``gallery.npz``: a few held-out images to explore the model with (``glowflow
  serve``), in the layout the ``npz:`` data sets use (``x`` ``[N, H, W, C]`` uint8, ``names``,
  ``note``: the images' terms of use), so ``--dataset npz:FOLDER/gallery.npz`` reads them too.

Weights are read with :func:`safetensors.torch.load_file` only: nothing in a pretrained folder
is ever unpickled or executed. ``huggingface_hub`` is an optional extra (``glowflow[hub]``) and
is imported only by the functions that talk to the Hub.

A model is named in one of three ways, tried in this order by :func:`resolve_pretrained`: a
local folder, a model bundled inside the package (``glowflow/models/<name>/``), or a Hub repo
id ``user/repo``.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Union

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from glowflow import __version__
from glowflow.checkpoint import atomic_write_bytes, model_from_checkpoint
from glowflow.config import GlowConfig
from glowflow.errors import GlowflowError, first_line
from glowflow.model import Glow
from glowflow.modelcard import CARD_KEYS, render_model_card

PathLike = Union[str, os.PathLike]

FORMAT = "glowflow-pretrained"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
ATTRIBUTES_FILE = "attributes.safetensors"
GALLERY_FILE = "gallery.npz"
#: What a Hub download fetches: the files of a pretrained folder and nothing else.
HUB_FILES = (CONFIG_FILE, WEIGHTS_FILE, ATTRIBUTES_FILE, GALLERY_FILE, CARD_FILE)
HUB_EXTRA = "pip install 'glowflow[hub]'"


#: The storage precisions an export may choose.
EXPORT_DTYPES = ("float16", "float32")
_STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class PretrainedError(GlowflowError, ValueError):
    """A pretrained folder or model name that cannot be used; the message names the file or
    name and the fix, on one line."""


# --------------------------------------------------------------------------------- helpers
def _one_line(text: str) -> str:
    """Messages quote file names and other errors: keep them on one line whatever they hold."""
    return " ".join(str(text).split())


def storage_dtype(
    dtype: torch.dtype | str, allowed: tuple[str, ...] = EXPORT_DTYPES
) -> torch.dtype:
    """The torch dtype named by ``dtype`` (a name or a torch dtype), one of ``allowed``."""
    name = str(dtype).replace("torch.", "") if isinstance(dtype, torch.dtype) else str(dtype)
    if name not in allowed:
        raise PretrainedError(
            f"cannot store weights as {_one_line(name)!r}; choose one of {', '.join(allowed)}"
        )
    return _STORAGE_DTYPES[name]


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PretrainedError(f"{path} is missing; {what}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PretrainedError(
            f"cannot read {path}: not valid JSON ({_one_line(first_line(e))}); {what}"
        ) from None
    if not isinstance(data, dict):
        raise PretrainedError(f"{path} does not hold a JSON object; {what}")
    return data


def _read_safetensors(
    path: Path, metadata: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (and, if asked, the metadata) of a safetensors file, read with
    :func:`safetensors.torch.load_file`: nothing is unpickled."""
    if not path.is_file():
        raise PretrainedError(f"{path} is missing; re-export the model with save_pretrained")
    try:
        tensors = load_file(path, device="cpu")
        meta: dict[str, str] = {}
        if metadata:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
    except Exception as e:  # the reader raises several types for damaged files
        raise PretrainedError(
            f"cannot read {path}: not a safetensors file ({_one_line(first_line(e))}); re-export it"
        ) from None
    return tensors, meta


def _is_pretrained(directory: Path) -> bool:
    return (directory / WEIGHTS_FILE).is_file()


def check_folder(directory: Path) -> None:
    """Check that ``directory`` may be written: new, empty, or a pretrained folder (whose files
    are then replaced). Anything else is refused so that no other data is lost."""
    if directory.exists() and not directory.is_dir():
        raise PretrainedError(f"{directory} is a file; pass a folder to save the model in")
    if directory.is_dir() and not _is_pretrained(directory):
        others = sorted(p.name for p in directory.iterdir())
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise PretrainedError(
                f"{directory} already holds other files ({_one_line(shown)}) and is not a "
                f"pretrained folder; choose a new or empty folder"
            )


def _tensors_for_storage(
    tensors: dict[str, torch.Tensor], dtype: torch.dtype, path: Path
) -> dict[str, torch.Tensor]:
    """CPU copies, floating-point ones cast to ``dtype`` (integer and bool ones keep theirs).

    The copies share no memory, which safetensors requires."""
    out = {}
    for key, t in tensors.items():
        t = t.detach().to("cpu")
        if t.is_floating_point():
            t = t.to(dtype)
            if not torch.isfinite(t).all():
                raise PretrainedError(
                    f"{key} is not finite once stored as {str(dtype).replace('torch.', '')} "
                    f"in {path}; save in float32, or fix the model's weights"
                )
        out[key] = t.clone().contiguous()
    return out


# --------------------------------------------------------------------------------- saving
def save_pretrained(
    model: Glow,
    directory: PathLike,
    *,
    card: dict[str, Any] | None = None,
    dtype: torch.dtype | str = torch.float32,
    attributes: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a pretrained folder (every file atomically).

    Args:
        model: the model; its whole ``state_dict()`` is written, buffers included.
        directory: a new or empty folder, or a pretrained folder whose files are replaced.
        card: facts for the model card (keys in :data:`CARD_KEYS`); only given facts appear.
        dtype: storage precision of floating-point tensors: ``float16`` halves the file,
            ``float32`` (default) is exact for a float32 model, ``float64`` for a float64 one.
        attributes: attribute directions, ``{"names": [A names], "directions": (A, D) tensor,
            "info": [A JSON-able dicts] (optional)}``, written to ``attributes.safetensors``.
        metadata: JSON-able facts kept in ``config.json`` (``class_names``, ``attr_names``,
            ``step``, ...).

    Returns:
        The folder's path.
    """
    directory = Path(directory).expanduser()
    stored = storage_dtype(dtype, tuple(_STORAGE_DTYPES))
    stored_name = str(stored).replace("torch.", "")
    facts = _check_card(card, directory)
    check_folder(directory)

    weights = _tensors_for_storage(model.state_dict(), stored, directory / WEIGHTS_FILE)
    header = {**(metadata or {}), "format": FORMAT, "version": VERSION, "dtype": stored_name}
    try:
        config_text = json.dumps({**model.config.to_dict(), "glowflow": header}, indent=2)
    except (TypeError, ValueError) as e:
        raise PretrainedError(
            f"metadata for {directory / CONFIG_FILE} is not JSON-serialisable "
            f"({_one_line(first_line(e))}); pass plain strings, numbers and lists"
        ) from None
    if attributes is not None:
        attr_bytes = _attributes_bytes(attributes, model.num_dims, stored, directory)

    try:
        directory.mkdir(parents=True, exist_ok=True)
        weights_bytes = safetensors_bytes(weights, metadata={"format": "pt"})
        atomic_write_bytes(directory / WEIGHTS_FILE, weights_bytes)
        atomic_write_bytes(directory / CONFIG_FILE, (config_text + "\n").encode("utf-8"))
        atomic_write_bytes(
            directory / CARD_FILE, render_model_card(model.config, facts, stored_name)
        )
        if attributes is not None:
            atomic_write_bytes(directory / ATTRIBUTES_FILE, attr_bytes)
        else:  # directions of a model that was here before would not fit this one
            (directory / ATTRIBUTES_FILE).unlink(missing_ok=True)
        (directory / GALLERY_FILE).unlink(missing_ok=True)  # nor might its gallery
    except OSError as e:
        raise PretrainedError(
            f"cannot write the pretrained folder {directory}: {_one_line(first_line(e))}; "
            f"free space or choose another folder"
        ) from e
    return directory


def _attributes_bytes(
    attributes: dict[str, Any], num_dims: int, dtype: torch.dtype, directory: Path
) -> bytes:
    path = directory / ATTRIBUTES_FILE
    names = attributes.get("names")
    directions = attributes.get("directions")
    if not torch.is_tensor(directions) or not directions.is_floating_point():
        raise PretrainedError(
            f"attributes for {path} need 'directions', a float tensor of shape (A, {num_dims})"
        )
    a = directions.shape[0] if directions.dim() == 2 else -1
    if directions.dim() != 2 or directions.shape[1] != num_dims:
        raise PretrainedError(
            f"attribute directions for {path} have shape {tuple(directions.shape)}; the model "
            f"needs (A, {num_dims})"
        )
    if not isinstance(names, (list, tuple)) or len(names) != a:
        raise PretrainedError(f"attributes for {path} need 'names', a list of {a} strings")
    info = attributes.get("info")
    info = [{} for _ in range(a)] if info is None else list(info)
    if len(info) != a:
        raise PretrainedError(f"attributes for {path} need 'info', a list of {a} dicts")
    try:
        meta = {
            "format": "glowflow-attributes",
            "names": json.dumps([str(n) for n in names]),
            "info": json.dumps(info),
        }
    except (TypeError, ValueError) as e:
        raise PretrainedError(
            f"attribute info for {path} is not JSON-serialisable ({_one_line(first_line(e))}); "
            f"pass plain numbers and strings"
        ) from None
    tensors = _tensors_for_storage({"directions": directions}, dtype, path)
    return safetensors_bytes(tensors, metadata=meta)


def load_attributes(
    name_or_path: PathLike, download: Callable[[str], Path] | None = None
) -> dict[str, Any] | None:
    """The attribute directions saved with a pretrained model, or None if it has none.

    Returns:
        ``{"names": [A names], "directions": float32 (A, D), "info": [A dicts]}``.
    """
    path = Path(name_or_path).expanduser()
    directory = path if path.is_dir() else resolve_pretrained(name_or_path, download)
    file = directory / ATTRIBUTES_FILE
    if not file.exists():
        return None
    tensors, meta = _read_safetensors(file, metadata=True)
    try:
        directions = tensors["directions"].float().clone()
        names = json.loads(meta["names"])
        info = json.loads(meta["info"])
        if directions.dim() != 2 or len(names) != len(directions) or len(info) != len(names):
            raise ValueError("names, info and directions disagree in number")
    except (KeyError, ValueError) as e:
        raise PretrainedError(
            f"{file} is not a glowflow attributes file ({_one_line(first_line(e))}); "
            f"re-export it with save_pretrained"
        ) from None
    return {"names": names, "directions": directions, "info": info}


# --------------------------------------------------------------------------------- card
def _check_card(card: dict[str, Any] | None, directory: Path) -> dict[str, Any]:
    card = dict(card or {})
    unknown = sorted(set(card) - set(CARD_KEYS))
    if unknown:
        raise PretrainedError(
            f"unknown model card facts {unknown} for {directory / CARD_FILE}; "
            f"known: {', '.join(CARD_KEYS)}"
        )
    card.setdefault("name", directory.resolve().name)
    card.setdefault("repo_id", directory.resolve().name)
    return {k: v for k, v in card.items() if v is not None and v != ""}


def bundled_root() -> Path:
    """The folder of the models that ship inside the package (it may not exist)."""
    return Path(str(resources.files("glowflow") / "models"))


def bundled_models() -> list[str]:
    """Names of the bundled models: the folders of :func:`bundled_root` holding weights."""
    root = bundled_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _is_pretrained(p))


def _import_hub(what: str) -> ModuleType:
    try:
        import huggingface_hub
    except ImportError:
        raise PretrainedError(f"{what} needs the hub extra: {HUB_EXTRA}") from None
    return huggingface_hub


def _download(repo_id: str) -> Path:
    """The snapshot of a Hub repo's pretrained files, from the local cache or the network."""
    hub = _import_hub(f"downloading {repo_id} from the Hugging Face Hub")
    try:
        folder = hub.snapshot_download(
            repo_id,
            allow_patterns=list(HUB_FILES),
            library_name="glowflow",
            library_version=__version__,
        )
    except Exception as e:  # network, authentication and not-found errors come in many types
        raise PretrainedError(
            f"cannot download {repo_id} from the Hugging Face Hub ({_one_line(first_line(e))}); "
            f"check the repo id, your connection, or log in with `hf auth login`"
        ) from None
    return Path(folder)


def resolve_pretrained(
    name_or_path: PathLike, download: Callable[[str], Path] | None = None
) -> Path:
    """The local folder of a pretrained model named by a path, a bundled name or a Hub id.

    Tried in order: an existing folder holding ``model.safetensors``; a bundled model (see
    :func:`bundled_models`); a Hub repo id ``user/repo``, fetched with ``download(repo_id)``
    if given, else ``huggingface_hub.snapshot_download``.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    bundled = bundled_models()
    listed = ", ".join(bundled) if bundled else "none"
    if path.exists():  # an existing path always wins, as in load_model
        if path.is_dir() and _is_pretrained(path):
            return path
        raise PretrainedError(
            f"{_one_line(name)} is not a pretrained folder (it holds no {WEIGHTS_FILE}); pass "
            f"a folder written by save_pretrained, a bundled model ({listed}) or a Hub id"
        )
    if name in bundled:
        return bundled_root() / name
    if _HUB_ID.match(name) and path.parent.is_dir() and str(path.parent) not in ("", "."):
        raise PretrainedError(
            f"{_one_line(name)} does not exist (and {path.parent} is a local folder, so it is "
            f"no Hub id); check the path"
        )
    if _HUB_ID.match(name):
        folder = Path(download(name) if download is not None else _download(name))
        if not _is_pretrained(folder):
            raise PretrainedError(
                f"the Hub repo {name} holds no {WEIGHTS_FILE}; is it a glowflow model "
                f"written by save_pretrained?"
            )
        return folder
    raise PretrainedError(
        f"no model named {_one_line(name)!r}: not a local folder, not a bundled model "
        f"(bundled: {listed}), and not a Hub id user/repo"
    )


# --------------------------------------------------------------------------------- loading
def read_pretrained_config(directory: PathLike) -> tuple[GlowConfig, dict[str, Any]]:
    """The model config of a pretrained folder and its ``"glowflow"`` metadata."""
    path = Path(directory) / CONFIG_FILE
    fix = "re-export the model with save_pretrained"
    data = read_json(path, fix)
    meta = data.pop("glowflow", None)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PretrainedError(f"{path} is not a glowflow pretrained config (no 'glowflow' entry)")
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise PretrainedError(
            f"{path} has format version {meta.get('version')}; this glowflow reads up to "
            f"{VERSION}: upgrade glowflow"
        )
    try:
        config = GlowConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise PretrainedError(f"invalid {path}: {_one_line(first_line(e))}; {fix}") from None
    return config, meta


def _keys(keys: list[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _load_folder(directory: Path, map_location: str | torch.device) -> tuple[Glow, dict[str, Any]]:
    """Build the model of a pretrained folder and load its weights, checking every tensor."""
    config, meta = read_pretrained_config(directory)
    model = Glow.from_config(config)
    path = directory / WEIGHTS_FILE
    stored, _ = _read_safetensors(path)
    expected = model.state_dict()
    fix = "re-export the model with save_pretrained"
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise PretrainedError(f"{path} lacks {len(missing)} tensor(s): {_keys(missing)}; {fix}")
    unexpected = sorted(set(stored) - set(expected))
    if unexpected:
        raise PretrainedError(
            f"{path} holds {len(unexpected)} tensor(s) the model in config.json does not "
            f"have: {_keys(unexpected)}; {fix}"
        )
    weights = {}
    for key, target in expected.items():
        t = stored[key]
        if t.shape != target.shape:
            raise PretrainedError(
                f"{path}: {key} has shape {tuple(t.shape)}, the model in config.json needs "
                f"{tuple(target.shape)}; {fix}"
            )
        if t.dtype != target.dtype and not (t.is_floating_point() and target.is_floating_point()):
            raise PretrainedError(
                f"{path}: {key} is stored as {t.dtype}, the model needs {target.dtype}; {fix}"
            )
        # float16 (or float64) storage comes back in the model's own precision
        weights[key] = t.to(target.dtype)
    model.load_state_dict(weights, strict=True)
    return model.to(map_location).eval(), meta


def load_pretrained(
    name_or_path: PathLike,
    *,
    map_location: str | torch.device = "cpu",
    download: Callable[[str], Path] | None = None,
) -> Glow:
    """Load a pretrained model (a folder, a bundled name or a Hub id), in eval mode.

    Floating-point weights come back in the precision of a freshly built model (the default
    dtype, usually float32) whatever precision they were stored in; actnorm keeps its stored
    initialisation.

    Args:
        name_or_path: see :func:`resolve_pretrained`.
        map_location: device to put the model on.
        download: ``repo_id -> local folder``, replacing the Hub download (tests, mirrors).
    """
    return _load_folder(resolve_pretrained(name_or_path, download), map_location)[0]


def load_model(
    spec: PathLike,
    map_location: str | torch.device = "cpu",
    ema: bool = True,
    download: Callable[[str], Path] | None = None,
) -> tuple[Glow, dict[str, Any]]:
    """The model named by a command's ``--checkpoint``, in eval mode, and what is known of it.

    ``spec`` is a run folder (holding ``checkpoint.pt``) or a checkpoint file, read with
    :func:`glowflow.checkpoint.model_from_checkpoint` (the EMA weights unless ``ema=False``;
    the info is the checkpoint's contents); or a pretrained folder, bundled name or Hub id,
    read with :func:`load_pretrained` (its weights are whatever was exported, so ``ema`` does
    not apply). An existing path always wins over a bundled model or Hub id of that name.

    Returns:
        The model and a dict with at least ``"data"`` (``class_names``, ``attr_names``) and
        ``"step"``; a pretrained model's also holds ``"pretrained_dir"`` and
        ``"model_config"``.
    """
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file() or (path / "checkpoint.pt").is_file():  # a checkpoint or run folder
            return model_from_checkpoint(path, map_location, ema)
        if not (path.is_dir() and _is_pretrained(path)):
            raise PretrainedError(
                f"{path} is neither a run folder (with checkpoint.pt), a checkpoint file nor a "
                f"pretrained folder (with {WEIGHTS_FILE}); pass one of those"
            )
        directory = path
    else:
        directory = resolve_pretrained(spec, download)
    model, meta = _load_folder(directory, map_location)
    info = {
        "data": {"class_names": meta.get("class_names"), "attr_names": meta.get("attr_names")},
        "step": meta.get("step"),
        "pretrained_dir": directory,
        "model_config": model.config.to_dict(),
    }
    return model, info


# --------------------------------------------------------------------------------- the Hub
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
        raise PretrainedError(f"{_one_line(repo_id)!r} is not a Hub repo id; write it user/repo")
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
            f"cannot push {directory} to {repo_id} ({_one_line(first_line(e))}); check the "
            f"repo id and that you are logged in with write access (`hf auth login`)"
        ) from None
    return f"https://huggingface.co/{repo_id}"


# --------------------------------------------------------------------------------- export
