"""The public ``Glow``: the flow of ``glowflow.nn`` with the methods that load it by
name, save it as a pretrained folder and push it to the Hugging Face Hub."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from glowflow.hub.names import push_to_hub, resolve_pretrained
from glowflow.hub.pretrained import PathLike, load_folder, save_pretrained
from glowflow.nn.model import GlowFlow


class Glow(GlowFlow):
    """Glow (see ``glowflow.nn.GlowFlow`` for the flow, its shapes and its latent layout)
    that can be loaded by name (``from_pretrained``), saved (``save_pretrained``) and
    shared (``push_to_hub``)."""

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: PathLike,
        map_location: str | torch.device = "cpu",
        *,
        revision: str | None = None,
        cache_dir: PathLike | None = None,
        download: Callable[[str], Path] | None = None,
    ) -> Glow:
        """A saved model, in eval mode: a pretrained folder, a bundled model's name (e.g.
        ``"mnist"``, ``"celeba64"``) or, with ``glowflow[hub]``, a model on the Hugging Face
        Hub, named explicitly ``"hf:user/repo"`` or ``"hf:user/repo@revision"`` (a bare
        ``"user/repo"`` is a local path).

        The config is checked and compared with the weights' shapes before the model is built
        (see ``glowflow.hub.pretrained.load_folder``). Floating-point weights come back in
        the precision of a freshly built model (the default dtype, usually float32) whatever
        precision they were stored in; actnorm keeps its stored initialisation.

        Args:
            name_or_path: see ``glowflow.hub.names.resolve_pretrained``.
            map_location: the device to put the model on.
            revision: the Hub revision (branch, tag or commit) of a Hub name that gives none;
                default main.
            cache_dir: where Hub downloads are kept; default the Hub's own cache.
            download: ``repo_id -> local folder``, replacing the Hub download (tests, mirrors).
        """
        folder = resolve_pretrained(name_or_path, download, revision=revision, cache_dir=cache_dir)
        return load_folder(folder, cls, map_location)[0]

    def save_pretrained(self, directory: PathLike, **kwargs: Any) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card ``README.md`` (see
        ``glowflow.hub.pretrained.save_pretrained`` for ``card``, ``dtype``,
        ``attributes`` and ``metadata``)."""
        return save_pretrained(self, directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Save to a temporary folder and upload it to the Hub repository ``repo_id``
        (``user/repo`` or ``hf:user/repo``; needs ``glowflow[hub]``); ``card``, ``dtype`` and
        ``attributes`` go to ``save_pretrained``, the rest to
        ``glowflow.hub.names.push_to_hub``."""
        save_kw = {k: kwargs.pop(k) for k in ("card", "dtype", "attributes") if k in kwargs}
        card = dict(save_kw.get("card") or {})
        card.setdefault("repo_id", repo_id)  # not the temporary folder's name
        card.setdefault("name", repo_id.split("/")[-1])
        save_kw["card"] = card
        with tempfile.TemporaryDirectory() as tmp:
            return push_to_hub(self.save_pretrained(tmp, **save_kw), repo_id, **kwargs)
