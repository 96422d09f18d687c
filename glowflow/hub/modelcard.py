"""The model card: the README.md of a pretrained folder, with the Hub's YAML front matter."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any, Callable

from glowflow.config import GlowConfig
from glowflow.hub.hubname import hub_name

#: The facts a model card can state; each is optional and only given facts are written.
CARD_KEYS = (
    "name",  # title of the card (default: the folder's name)
    "repo_id",  # the Hub repo (user/repo) of the "How to use" snippet (default: the folder's name)
    "license",  # licence of the weights, an SPDX-like Hub identifier such as "mit"
    "dataset",  # what it was trained on
    "data_license",  # the data set's licence
    "heldout",  # description of the held-out images
    "heldout_images",  # how many held-out images
    "heldout_bpd",  # bits/dim measured on them, one dequantisation draw an image
    "dims",  # the dimensions those bits/dim are over: the model's input, C * H * W
    "heldout_bpd_original",  # the same bits over the pixels before padding
    "original_dims",  # those pixels, C * (H - 2 pad) * (W - 2 pad), where padded
    "test",  # description of a test set, reported only: nothing is chosen on it
    "test_images",  # how many test images
    "test_bpd",  # bits/dim on them, one draw an image, over ``dims``
    "test_bpd_original",  # over ``original_dims``
    "test_samples",  # K of the importance-weighted figure below
    "test_bpd_iw",  # the importance-weighted estimate over K draws, over ``dims``
    "test_bpd_iw_original",  # over ``original_dims``
    "comparison",  # Markdown: the model beside published results
    "train_command",  # the command that trained it
    "steps",  # optimisation steps
    "wall_time_min",  # training wall time in minutes
    "notes",  # free text
)


def _yaml_scalar(value: Any) -> str:
    text = str(value)
    # plain identifiers stay bare; anything else becomes a JSON string, which is valid YAML
    return text if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", text) else json.dumps(text)


def architecture(config: GlowConfig) -> str:
    """One line describing the architecture, as the model card states it."""
    c, h, w = config.image_shape
    parts = [
        f"L={config.levels} levels",
        f"K={config.depth} flow steps per level",
        f"width {config.hidden_channels}",
        f"{config.coupling} coupling",
        f"{config.permutation} permutation",
        "learned top prior" if config.learn_top else "standard normal top prior",
        f"{config.n_bits}-bit colour",
        f"images {c}x{h}x{w} (D = {config.num_dims})",
    ]
    if config.num_classes is not None:
        parts.append(f"class-conditional on {config.num_classes} classes")
    return ", ".join(parts)


def _decimals(n: int) -> Callable[[Any], str]:
    return lambda v: f"{v:.{n}f}" if isinstance(v, float) else str(v)


def _facts(card: dict[str, Any], rows: list[tuple[str, str, Callable[[Any], str]]]) -> list[str]:
    """One ``- Label: value`` line for each fact of ``rows`` that the card gives."""
    return [f"- {label}: {show(card[key])}" for key, label, show in rows if key in card]


def _bits(card: dict[str, Any], key: str, label: str) -> list[str]:
    """The line of a bits/dim figure, naming what it counts: the dimensions it is over (and
    the figure over the pixels before padding, ``KEY_original``), and the draws an image."""
    if key not in card:
        return []
    value = _decimals(4)(card[key])
    draws = "one dequantisation draw"
    if key.endswith("_iw"):
        draws = f"{card['test_samples']} dequantisation draws"
    if "dims" not in card:
        return [f"- {label}: {value} ({draws} an image)"]
    line = f"- {label}: {value} over the model's {card['dims']:,} input dimensions"
    original = card.get(key + "_original")
    if original is not None and "original_dims" in card:
        pixels = card["original_dims"]
        line += f"; {_decimals(4)(original)} over the {pixels:,} pixels before padding"
    return [f"{line} ({draws} an image)"]


def render_model_card(config: GlowConfig, card: dict[str, Any], dtype: str = "float32") -> bytes:
    """A Hub model card (``README.md``): YAML front matter, then one line per given fact."""
    front = ["---", "library_name: glowflow"]
    if "license" in card:
        front.append(f"license: {_yaml_scalar(card['license'])}")
    front += ["tags:", "- glow", "- normalizing-flow", "- generative", "---"]

    model = [
        f"- Architecture: {architecture(config)}",
        f"- Weights: `model.safetensors`, {dtype}",
    ]
    if "license" in card:
        model.append(f"- Licence of the weights: {card['license']}")
    data = _facts(card, [("dataset", "Data set", str), ("data_license", "Data licence", str)])
    evaluation = _facts(card, [
        ("heldout", "Held-out images", str),
        ("heldout_images", "Number of held-out images", str),
    ])  # fmt: skip
    evaluation += _bits(card, "heldout_bpd", "Bits per dimension on the held-out images")
    evaluation += _facts(card, [
        ("test", "Test images (reported only: nothing was trained, chosen or tuned on them)", str),
        ("test_images", "Number of test images", str),
    ])  # fmt: skip
    evaluation += _bits(card, "test_bpd", "Bits per dimension on the test images")
    samples = card.get("test_samples")
    evaluation += _bits(card, "test_bpd_iw", f"The same, importance-weighted over {samples} draws")
    training = _facts(card, [
        ("train_command", "Command", lambda v: f"`{v}`"),
        ("steps", "Steps", str),
        ("wall_time_min", "Wall time", lambda v: f"{_decimals(1)(v)} minutes"),
    ])  # fmt: skip

    name = str(card.get("repo_id") or card.get("name") or "NAME")
    # a Hub repo is loaded by its explicit name, hf:user/repo (a bare user/repo is a local path)
    loadable = hub_name(name) if "/" in name else name
    usage = [
        "```python",
        "import glowflow",
        "",
        f'model = glowflow.Glow.from_pretrained("{loadable}")  # eval mode, on the CPU',
        "images = glowflow.postprocess(model.sample(16, temperature=0.7))  # uint8 images",
        "```",
        "",
        "```bash",
        f"glowflow sample --checkpoint {shlex.quote(loadable)} --seeds 0-63 --temperature 0.7 "
        "--out samples.png",
        "```",
    ]
    body = [
        f"# {card.get('name') or name}",
        "",
        "A Glow normalizing flow (Kingma & Dhariwal, 2018) for images, made with glowflow: "
        "an exact log-likelihood, sampling at any temperature, and an invertible latent space.",
    ]
    sections = [
        ("Model", model),
        ("Data", data),
        ("Evaluation", evaluation),
        ("Beside published results", [str(card["comparison"])] if "comparison" in card else []),
        ("Training", training),
        ("Notes", [str(card["notes"])] if "notes" in card else []),
        ("How to use", usage),
    ]
    for title, lines in sections:
        if lines:
            body += ["", f"## {title}", "", *lines]
    return ("\n".join(front + [""] + body) + "\n").encode("utf-8")


# --------------------------------------------------------------------------------- names
