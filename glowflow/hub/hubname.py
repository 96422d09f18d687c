"""How a model on the Hugging Face Hub is named: ``hf:user/repo``, or ``hf:user/repo@revision``.

The ``hf:`` prefix makes the name unambiguous. Without it, ``user/repo`` is a local path (the
command line's own run folders, ``runs/NAME``, have that very shape) and is never sent to the
network. Written here once, for the loader (``glowflow.hub.names``) and the model card's
usage snippet (``glowflow.hub.modelcard``).
"""

from __future__ import annotations

import re

HUB_PREFIX = "hf:"
#: A Hub repo id, ``user/repo``, as the Hub spells them.
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_hub_name(name: str) -> bool:
    """Whether ``name`` is meant for the Hub: it starts with ``hf:``."""
    return name.startswith(HUB_PREFIX)


def parse_hub_name(name: str) -> tuple[str, str | None] | None:
    """``"hf:user/repo@v1"`` -> ``("user/repo", "v1")``, ``"hf:user/repo"`` ->
    ``("user/repo", None)``; None if ``name`` is not a well-formed Hub name. The revision
    (a branch, tag or commit) is everything after the first ``@``, which no repo id holds."""
    if not is_hub_name(name):
        return None
    repo_id, at, revision = name[len(HUB_PREFIX) :].partition("@")
    if not REPO_ID.match(repo_id) or (at and not re.fullmatch(r"\S+", revision)):
        return None
    return repo_id, revision or None


def hub_name(repo_id: str) -> str:
    """The explicit Hub name of a repo id: ``user/repo`` -> ``hf:user/repo`` (a name that is
    already explicit stays as it is)."""
    return repo_id if is_hub_name(repo_id) else HUB_PREFIX + repo_id
