"""Models as files: checkpoints, the pretrained (Hugging Face Hub) format, names of bundled
and Hub models, model cards, galleries, and the one loader."""

from glowflow.hub.load import LoadedModel, load_model
from glowflow.hub.model import Glow

__all__ = ["Glow", "LoadedModel", "load_model"]
