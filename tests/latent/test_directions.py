"""Which direction an edit uses: the one the model ships, else one computed over a data set
and cached under a key of everything it depends on."""

from __future__ import annotations

import pytest
import torch
from conftest import labelled

from glowflow import Glow, preprocess
from glowflow.data.formats import DataError
from glowflow.hub.load import LoadedModel
from glowflow.latent.attributes import attribute_direction, attribute_masks
from glowflow.latent.directions import (
    DirectionError,
    attribute_choices,
    cache_entry,
    cached_direction,
    choose_direction,
)


def run_model(tmp_path, pretrained: bool = False) -> LoadedModel:
    model = Glow((1, 4, 4), levels=1, depth=1, hidden_channels=4)
    model.initialize(preprocess(labelled().images))
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    weights = folder / ("model.safetensors" if pretrained else "checkpoint.pt")
    return LoadedModel(model.eval(), str(folder), "pretrained" if pretrained else "run", weights,
                       pretrained_dir=folder if pretrained else None)  # fmt: skip


SHIPPED = {"names": ["Odd", "Big"], "directions": torch.eye(2, 16), "info": [{"n": 1}, {"n": 2}]}


def test_a_shipped_direction_wins_and_nothing_is_encoded(tmp_path):
    loaded = run_model(tmp_path)
    loaded.model.encode = None  # encoding anything would fail
    chosen = choose_direction(loaded, "Big", labelled(), SHIPPED)
    assert chosen.source == "shipped" and chosen.info == {"n": 2}
    assert torch.equal(chosen.direction, torch.eye(2, 16)[1])
    assert not (tmp_path / "model" / "attributes.pt").exists()


def test_else_the_direction_is_computed_over_the_data_then_read_from_the_cache(tmp_path):
    loaded, data = run_model(tmp_path), labelled()
    first = choose_direction(loaded, "Early", data, SHIPPED, data_options={"pad": None})
    assert first.source == "computed" and (tmp_path / "model" / "attributes.pt").is_file()
    want, info = attribute_direction(loaded.model, data.images, *attribute_masks(data, "Early")[:2])
    assert torch.equal(first.direction, want) and first.info == info
    again = choose_direction(loaded, "Early", data, SHIPPED, data_options={"pad": None})
    assert again.source == "cached" and torch.equal(again.direction, first.direction)
    other = choose_direction(loaded, "Early", data, SHIPPED, data_options={"pad": 2})
    assert other.source == "computed"  # another way of loading the data: another entry


def test_max_images_computes_over_the_first_images_only(tmp_path):
    loaded = run_model(tmp_path)
    chosen = choose_direction(loaded, "Early", labelled(), max_images=8)
    assert (chosen.info["positives"], chosen.info["negatives"]) == (5, 3)
    assert choose_direction(loaded, "Early", labelled()).source == "computed"
    assert choose_direction(loaded, "Early", labelled(), max_images=8).source == "cached"


def test_a_pretrained_models_cache_goes_to_the_users_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    loaded = run_model(tmp_path, pretrained=True)
    assert choose_direction(loaded, "One", labelled()).source == "computed"
    assert len(list((tmp_path / "cache" / "glowflow").glob("attributes-*.pt"))) == 1
    assert not (tmp_path / "model" / "attributes.pt").exists()
    assert choose_direction(loaded, "One", labelled()).source == "cached"


def test_without_data_only_a_shipped_direction_can_be_had(tmp_path):
    with pytest.raises(DirectionError, match="give --dataset SPEC .*'Smiling'.*it ships Odd, Big"):
        choose_direction(run_model(tmp_path), "Smiling", None, SHIPPED)
    with pytest.raises(DirectionError, match=r"direction$"):
        choose_direction(run_model(tmp_path), "Smiling", None, None)
    with pytest.raises(DataError, match="did you mean Early"):
        choose_direction(run_model(tmp_path), "early", labelled(), SHIPPED)


def test_the_choices_list_shipped_directions_then_the_data_sets():
    text = attribute_choices(SHIPPED, labelled())
    lines = text.splitlines()
    assert lines[:2] == ["Odd\tshipped with the model", "Big\tshipped with the model"]
    assert "Early\t5 of 12" in lines and "class:c\t4 of 12" in lines
    assert (
        attribute_choices(SHIPPED, None)
        == "Odd\tshipped with the model\nBig\tshipped with the model"
    )
    assert attribute_choices(None, labelled()).startswith("One\t4 of 12")
    with pytest.raises(DirectionError, match="ships no attribute directions: give --dataset"):
        attribute_choices(None, None)


def test_the_direction_cache_is_keyed_by_content_not_by_file_metadata(tmp_path):
    """A cached direction is reused for the same weights and images only: a model of the same
    size written over the same file with its modification time kept, a changed weight in
    memory, or a changed image at the same path all compute it again."""
    data = labelled()
    model = Glow((1, 4, 4), levels=1, depth=1, hidden_channels=4)
    model.initialize(preprocess(data.images))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"the same bytes, size and time whatever the model")
    options = {"attribute": "Early", "max_images": None}

    def lookup(m, d):
        cache, key = cache_entry(weights, m, d, options)
        return cached_direction(m, cache, key, d, "Early")

    first, _, was_cached = lookup(model, data)
    assert not was_cached and lookup(model, data)[2]  # the same content: from the cache
    other = Glow((1, 4, 4), levels=1, depth=1, hidden_channels=4)  # same size, other weights
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.levels[0].steps[0].actnorm.bias.add_(0.5)
    direction, _, was_cached = lookup(other, data)
    assert not was_cached and not torch.equal(direction, first)
    changed = data.subset(torch.arange(len(data)))
    changed.images = changed.images.clone()
    changed.images[0, 0, 0, 0] ^= 1
    assert not lookup(model, changed)[2]
    assert lookup(model, data)[2] and lookup(other, data)[2]  # both entries are kept
