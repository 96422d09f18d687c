"""The ``glowflow`` command line that draws the same picture as an explorer request, shown
beside the picture so that a user can reproduce it outside the browser."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Mapping

from glowflow.explorer.entries import Entry


@dataclass(frozen=True)
class Commands:
    """How commands name the explorer's model and images.

    Attributes:
        checkpoint: how a ``glowflow`` command names the model.
        gallery_words: the options by which a command names the gallery's data set (e.g.
            ``["--dataset", "npz:.../gallery.npz"]``; the gallery is its first images), or None.
        direction_words: the options a command needs to get the same directions (``[]`` for
            directions the model ships; ``--dataset`` options for computed ones).
        conditional: whether the model is class-conditional (an upload's label is a guess of
            the explorer's, which no command makes).
        levels: the model's number of levels.
    """

    checkpoint: str
    gallery_words: list[str] | None = None
    direction_words: list[str] = field(default_factory=list)
    conditional: bool = False
    levels: int = 1

    def image_words(self, entry: Entry) -> list[str] | None:
        """How ``manipulate`` names the image and gets the directions: the image's index in the
        gallery's data set, or the crop's file (as ``/api/images/ID.png`` gives it); None where
        no command can. Computed directions come from the gallery's data set, so its options
        (``direction_words``) name both."""
        if entry.gallery_index is not None:
            if self.gallery_words is None:
                return None
            words = self.direction_words or self.gallery_words
            return [*words, "--images", str(entry.gallery_index)]
        if self.conditional:
            return None
        return [*self.direction_words, "--images", f"{entry.id}.png"]

    def edit(self, entry: Entry, amounts: Mapping[str, float], attributes: list[str]) -> str | None:
        """The ``glowflow manipulate`` command that moves ``entry`` by the checked ``amounts``
        (one attribute at most; none moves along the first of ``attributes`` by 0), or None."""
        words = self.image_words(entry)
        if words is None or len(amounts) > 1 or not attributes:
            return None
        name, amount = next(iter(amounts.items()), (attributes[0], 0.0))
        return shlex.join(["glowflow", "manipulate", "--checkpoint", self.checkpoint, *words,
                           "--attribute", name, f"--alphas={amount:g}",
                           "--out", "edit.png"])  # fmt: skip

    def sample(self, seed: int, temperature: float, label: int | None = None) -> str:
        """The ``glowflow sample`` command that draws the same sample."""
        words = ["glowflow", "sample", "--checkpoint", self.checkpoint, "--seeds", str(seed),
                 "--temperature", f"{temperature:g}", "--out", f"sample-{seed}.png"]  # fmt: skip
        if label is not None:
            words += ["--label", str(label)]
        return shlex.join(words)

    def mix(self, a: Entry, b: Entry, t: float, path: str, levels: str) -> str | None:
        """The ``glowflow interpolate`` command whose steps include this mix (every level
        mixed, ``t`` a multiple of 1/10 between two gallery images), or None."""
        if levels != "m" * self.levels or self.gallery_words is None:
            return None
        if a.gallery_index is None or b.gallery_index is None:
            return None
        tenths = t * 10
        if abs(tenths - round(tenths)) > 1e-9 or self.conditional:
            return None
        words = ["glowflow", "interpolate", "--checkpoint", self.checkpoint, *self.gallery_words,
                 "--pairs", f"{a.gallery_index},{b.gallery_index}", "--steps", "11",
                 *(["--spherical"] if path == "spherical" else []),
                 "--out", "mix.png"]  # fmt: skip
        return shlex.join(words) + f"  # column {round(tenths) + 2} of 13"
