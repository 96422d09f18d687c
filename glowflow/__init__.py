"""glowflow: Glow (Kingma & Dhariwal, 2018), an exact normalizing flow for images."""

__version__ = "0.1.0"  # first, so that modules importing it never see a half-made package

from glowflow.actnorm import ActNorm
from glowflow.config import PRESETS, GlowConfig, preset
from glowflow.coupling import AdditiveCoupling, AffineCoupling, CouplingNet, ZeroConv2d
from glowflow.flowstep import FlowStep
from glowflow.invconv import ChannelPermutation, InvConv1x1, InvConv1x1LU
from glowflow.model import Glow, Level
from glowflow.objective import bits_per_dim, postprocess, preprocess, quantize
from glowflow.prior import SplitPrior, TopPrior, standard_normal_logp
from glowflow.squeeze import Squeeze, squeeze2d, unsqueeze2d

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
    "InvConv1x1",
    "InvConv1x1LU",
    "Level",
    "SplitPrior",
    "Squeeze",
    "TopPrior",
    "ZeroConv2d",
    "bits_per_dim",
    "postprocess",
    "preprocess",
    "preset",
    "quantize",
    "squeeze2d",
    "standard_normal_logp",
    "unsqueeze2d",
]
