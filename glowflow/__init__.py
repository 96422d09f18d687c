"""glowflow: Glow (Kingma & Dhariwal, 2018), an exact normalizing flow for images."""

from glowflow.config import PRESETS, GlowConfig, preset
from glowflow.hub import LoadedModel, checkpoint, load_model
from glowflow.hub.model import Glow
from glowflow.hub.onnx_export import export_onnx
from glowflow.nn.actnorm import ActNorm
from glowflow.nn.coupling import AdditiveCoupling, AffineCoupling, CouplingNet, ZeroConv2d
from glowflow.nn.flowstep import FlowStep
from glowflow.nn.invconv import ChannelPermutation, InvConv1x1, InvConv1x1LU
from glowflow.nn.model import GlowFlow, Level
from glowflow.nn.objective import bits_per_dim, postprocess, preprocess, quantize
from glowflow.nn.prior import SplitPrior, TopPrior, standard_normal_logp
from glowflow.nn.squeeze import Squeeze, squeeze2d, unsqueeze2d
from glowflow.version import __version__

__all__ = [
    "PRESETS",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "ChannelPermutation",
    "CouplingNet",
    "FlowStep",
    "Glow",
    "GlowConfig",
    "GlowFlow",
    "InvConv1x1",
    "InvConv1x1LU",
    "Level",
    "LoadedModel",
    "SplitPrior",
    "Squeeze",
    "TopPrior",
    "ZeroConv2d",
    "__version__",
    "bits_per_dim",
    "checkpoint",
    "export_onnx",
    "load_model",
    "postprocess",
    "preprocess",
    "preset",
    "quantize",
    "squeeze2d",
    "standard_normal_logp",
    "unsqueeze2d",
]
