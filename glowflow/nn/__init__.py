"""The flow itself: the invertible layers, one step of flow, the multi-scale model, the
objective, memory-saving backprop and the bf16 rules. Imports nothing of glowflow but its config
and errors, so these pieces can be reused in other flows."""

from glowflow.nn.actnorm import ActNorm
from glowflow.nn.coupling import AdditiveCoupling, AffineCoupling, CouplingNet, ZeroConv2d
from glowflow.nn.flowstep import FlowStep
from glowflow.nn.invconv import ChannelPermutation, InvConv1x1, InvConv1x1LU
from glowflow.nn.model import GlowFlow, Level
from glowflow.nn.objective import bits_per_dim, postprocess, preprocess, quantize
from glowflow.nn.prior import SplitPrior, TopPrior, standard_normal_logp
from glowflow.nn.squeeze import Squeeze, squeeze2d, unsqueeze2d

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "ChannelPermutation",
    "CouplingNet",
    "FlowStep",
    "GlowFlow",
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
    "quantize",
    "squeeze2d",
    "standard_normal_logp",
    "unsqueeze2d",
]
