"""The pretrained format: trained models as Hugging Face Hub folders, written and read.

A *pretrained folder* holds

- ``config.json``: the model's ``GlowConfig.to_dict`` plus a ``"glowflow"`` entry (format
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

Weights are read with ``safetensors.torch.load_file`` only: nothing in a pretrained folder
is ever unpickled or executed. ``huggingface_hub`` is an optional extra (``glowflow[hub]``) and
is imported only by the functions that talk to the Hub.

How a model is named (a folder, a bundled name, a Hub name ``hf:user/repo``) is the job of
``glowflow.hub.names``; ``glowflow.load_model`` reads any of them. A folder's config is
checked, and compared with its weights' shapes, before its model is built
(``glowflow.hub.shapes``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar, Union

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from glowflow.config import GlowConfig
from glowflow.errors import GlowflowError, first_line
from glowflow.files import atomic_write_bytes, check_stamp
from glowflow.hub.modelcard import CARD_KEYS, render_model_card
from glowflow.hub.shapes import Spec, check_tensors, expected_tensors
from glowflow.nn.model import GlowFlow

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


#: The storage precisions an export may choose.
EXPORT_DTYPES = ("float16", "float32")
_STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}
M = TypeVar("M", bound=GlowFlow)


class PretrainedError(GlowflowError, ValueError):
    """A pretrained folder or model name that cannot be used; the message names the file or
    name and the fix, on one line."""


# --------------------------------------------------------------------------------- helpers
def one_line(text: str) -> str:
    """Messages quote file names and other errors: keep them on one line whatever they hold."""
    return " ".join(str(text).split())


def storage_dtype(
    dtype: torch.dtype | str, allowed: tuple[str, ...] = EXPORT_DTYPES
) -> torch.dtype:
    """The torch dtype named by ``dtype`` (a name or a torch dtype), one of ``allowed``."""
    name = str(dtype).replace("torch.", "") if isinstance(dtype, torch.dtype) else str(dtype)
    if name not in allowed:
        raise PretrainedError(
            f"cannot store weights as {one_line(name)!r}; choose one of {', '.join(allowed)}"
        )
    return _STORAGE_DTYPES[name]


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PretrainedError(f"{path} is missing; {what}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PretrainedError(
            f"cannot read {path}: not valid JSON ({one_line(first_line(e))}); {what}"
        ) from None
    if not isinstance(data, dict):
        raise PretrainedError(f"{path} does not hold a JSON object; {what}")
    return data


def _unreadable(path: Path, e: Exception) -> PretrainedError:
    return PretrainedError(
        f"cannot read {path}: not a safetensors file ({one_line(first_line(e))}); re-export it"
    )


def _read_safetensors(
    path: Path, metadata: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (and, if asked, the metadata) of a safetensors file, read with
    ``safetensors.torch.load_file``: nothing is unpickled."""
    if not path.is_file():
        raise PretrainedError(f"{path} is missing; re-export the model with save_pretrained")
    try:
        tensors = load_file(path, device="cpu")
        meta: dict[str, str] = {}
        if metadata:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
    except Exception as e:  # the reader raises several types for damaged files
        raise _unreadable(path, e) from None
    return tensors, meta


#: The dtypes of a safetensors header that a glowflow model's tensors may be stored in.
_HEADER_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip


def read_header(path: Path) -> dict[str, Spec]:
    """The shape and dtype of each tensor of a safetensors file, from its header alone: no
    tensor is read (see ``glowflow.hub.shapes``)."""
    if not path.is_file():
        raise PretrainedError(f"{path} is missing; re-export the model with save_pretrained")
    try:
        with safe_open(path, framework="pt") as f:
            specs = {}
            for key in f.keys():
                part = f.get_slice(key)
                dtype = part.get_dtype()
                specs[key] = (tuple(part.get_shape()), _HEADER_DTYPES.get(dtype, dtype))
    except Exception as e:  # the reader raises several types for damaged files
        raise _unreadable(path, e) from None
    return specs


def is_pretrained(directory: Path) -> bool:
    return (directory / WEIGHTS_FILE).is_file()


def check_folder(directory: Path) -> None:
    """Check that ``directory`` may be written: new, empty, or a pretrained folder (whose files
    are then replaced). Anything else is refused so that no other data is lost."""
    if directory.exists() and not directory.is_dir():
        raise PretrainedError(f"{directory} is a file; pass a folder to save the model in")
    if directory.is_dir() and not is_pretrained(directory):
        others = sorted(p.name for p in directory.iterdir())
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise PretrainedError(
                f"{directory} already holds other files ({one_line(shown)}) and is not a "
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
    model: GlowFlow,
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
        card: facts for the model card (keys in ``CARD_KEYS``); only given facts appear.
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
            f"({one_line(first_line(e))}); pass plain strings, numbers and lists"
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
            f"cannot write the pretrained folder {directory}: {one_line(first_line(e))}; "
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
            f"attribute info for {path} is not JSON-serialisable ({one_line(first_line(e))}); "
            f"pass plain numbers and strings"
        ) from None
    tensors = _tensors_for_storage({"directions": directions}, dtype, path)
    return safetensors_bytes(tensors, metadata=meta)


def load_attributes(directory: PathLike) -> dict[str, Any] | None:
    """The attribute directions saved in a pretrained folder, or None if it has none.

    Returns:
        ``{"names": [A names], "directions": float32 (A, D), "info": [A dicts]}``.
    """
    file = Path(directory).expanduser() / ATTRIBUTES_FILE
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
            f"{file} is not a glowflow attributes file ({one_line(first_line(e))}); "
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


def read_pretrained_config(directory: PathLike) -> tuple[GlowConfig, dict[str, Any]]:
    """The model config of a pretrained folder and its ``"glowflow"`` metadata."""
    path = Path(directory) / CONFIG_FILE
    fix = "re-export the model with save_pretrained"
    data = read_json(path, fix)
    meta = data.pop("glowflow", None)
    check_stamp(
        meta, FORMAT, VERSION, what=str(path), error=PretrainedError, newer="upgrade glowflow",
        kind="a glowflow pretrained config (no valid 'glowflow' entry)",
    )  # fmt: skip
    try:
        config = GlowConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise PretrainedError(f"invalid {path}: {one_line(first_line(e))}; {fix}") from None
    return config, meta


def load_folder(
    directory: Path, cls: type[M], map_location: str | torch.device = "cpu"
) -> tuple[M, dict[str, Any]]:
    """Build the model of a pretrained folder as a ``cls`` (a ``GlowFlow`` class) and load
    its weights; in eval mode, with the folder's ``"glowflow"`` metadata.

    The config is checked (``GlowConfig``), then compared with the weights file's header,
    tensor by tensor (``glowflow.hub.shapes.check_tensors``), before anything is built: a
    config or weights file that disagree are refused in one line without allocating the model.
    """
    config, meta = read_pretrained_config(directory)
    path = directory / WEIGHTS_FILE
    fix = "re-export the model with save_pretrained"
    expected = expected_tensors(config, cls)
    check_tensors(
        read_header(path), expected, str(path), "the model in config.json", fix, PretrainedError
    )
    model = cls.from_config(config)
    stored, _ = _read_safetensors(path)
    # float16 (or float64) storage comes back in the model's own precision
    weights = {key: stored[key].to(target.dtype) for key, target in model.state_dict().items()}
    model.load_state_dict(weights, strict=True)
    return model.to(map_location).eval(), meta
