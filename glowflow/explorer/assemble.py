"""The explorer of a loaded model, as ``glowflow serve`` assembles it: which directions it
edits along, which images its gallery offers, how it frames uploads, and the options by which
the command lines it shows name the same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from glowflow.data.datasets import KINDS
from glowflow.data.imagedata import ImageData
from glowflow.explorer.checks import FRAMINGS, ExplorerError
from glowflow.explorer.explorer import Explorer
from glowflow.explorer.runtime import choose_runtime
from glowflow.hub.gallery import Gallery, load_gallery
from glowflow.hub.load import LoadedModel
from glowflow.latent.attributes import dataset_directions

#: The attribute that marks a face model (one trained with CelebA's attributes).
FACE_ATTRIBUTE = "Smiling"


def dataset_words(spec: str, image_size: int | None = None, pad: int | None = None) -> list[str]:
    """The options by which a ``glowflow`` command loads the data set ``spec`` as given here."""
    words = ["--dataset", spec]
    for flag, value in (("--image-size", image_size), ("--pad", pad)):
        if value is not None:
            words += [flag, str(value)]
    return words


def shown(word: str) -> str:
    """A model name, data-set spec or path as the page may show it: no local path outside the
    folder the server runs in. A path inside that folder is shown relative to it (so the
    command lines shown still run from there), unless that folder is ``/`` or the home folder;
    any other absolute path by its last part only, after ``.../`` (a command line showing one
    needs the path put back to run). A spec ``KIND:PATH`` keeps its kind; a name that is no
    path, or a relative path as the user typed it, is kept."""
    kind, colon, rest = word.partition(":")
    if colon and kind in KINDS:
        return f"{kind}:{shown(rest)}"
    path = Path(word).expanduser()
    if not (path.is_absolute() or ".." in path.parts or word.startswith("~")):
        return word
    try:
        here = Path.cwd().resolve()
        if here in (Path(here.anchor), Path.home().resolve()):
            raise ValueError("run from / or the home folder, a relative path shows its layout")
        return str(path.resolve().relative_to(here))
    except (ValueError, OSError, RuntimeError):
        return f".../{path.name}"


def frames_faces(framing: str, attr_names: list[str] | None) -> bool:
    """Whether uploads are framed around a detected face: ``framing`` is one of
    ``FRAMINGS``; ``auto`` means faces for a model with CelebA's attributes."""
    if framing not in FRAMINGS:
        raise ExplorerError(f"framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
    return framing == "face" or (framing == "auto" and FACE_ATTRIBUTE in (attr_names or []))


def build_explorer(
    loaded: LoadedModel,
    data: ImageData | None = None,
    dataset: str | None = None,
    image_size: int | None = None,
    pad: int | None = None,
    limit: int | None = None,
    gallery_size: int = 24,
    framing: str = "auto",
    progress: Callable[[Iterable, int], Iterable] | None = None,
    runtime: str = "torch",
    say: Callable[[str], None] = print,
) -> Explorer:
    """The explorer of ``loaded``, with what it ships or what ``data`` gives.

    Directions: those the model ships; else, for ``data`` with attributes or labels, every
    attribute's and every class's computed over it (``dataset_directions``, with
    ``progress``); else none. Gallery: the first ``gallery_size`` images of ``data``; else the
    gallery a pretrained folder ships; else none. The command lines shown name the model as it
    was asked for (``loaded.name``) and the data set by its spec and options.

    Args:
        loaded: the model and what is known of it.
        data: labelled images, as loaded from the spec ``dataset`` with ``image_size``,
            ``pad`` and ``limit`` (its first images), checked to fit the model; or None.
        dataset: the spec ``data`` was loaded from (default ``data.name``, which
            ``glowflow.data.datasets.load_dataset`` sets to it).
        framing: one of ``glowflow.explorer.checks.FRAMINGS``.
        runtime: one of ``glowflow.explorer.checks.RUNTIMES``, chosen by
            ``glowflow.explorer.runtime.choose_runtime`` (which tells ``say`` of a one-time
            export).

    Raises:
        ExplorerError: for an unknown ``framing``.
    """
    faces = frames_faces(framing, loaded.attr_names)
    folder = loaded.pretrained_dir
    directions: dict[str, Any] | None = loaded.shipped_directions()
    direction_words: list[str] = []
    if data is None:
        gallery = load_gallery(folder) if folder else None
        gallery_words = ["--dataset", gallery.spec] if gallery else None
    else:
        dataset = dataset or data.name
        gallery_words = dataset_words(dataset, image_size, pad)
        if directions is None and (data.attrs is not None or data.labels is not None):
            directions = dataset_directions(loaded.model, data, progress=progress)
            direction_words = gallery_words + (["--max-images", str(limit)] if limit else [])
        n = min(gallery_size, len(data))
        labels = None if data.labels is None else data.labels[:n]
        names = [f"{shown(dataset)} #{i}" for i in range(n)]
        gallery = Gallery(data.images[:n], names, None, dataset, labels)
    if gallery is not None:  # its names and spec reach the page
        gallery.names = [shown(n) for n in gallery.names]
        gallery.spec = shown(gallery.spec)
    public = [shown(w) for w in gallery_words] if gallery_words is not None else None
    return Explorer(
        loaded.model, directions, gallery, checkpoint=shown(loaded.name), gallery_words=public,
        direction_words=[shown(w) for w in direction_words], class_names=loaded.class_names,
        faces=faces, name=shown(loaded.name),
        runtime=choose_runtime(loaded.model, runtime, folder, say),
    )  # fmt: skip
