"""Whole networks written with :mod:`nbops.nn`: torchvision's ResNets and Transformer encoder layers (with
LayerNorm, DeepNorm and DyT normalisation). State_dict keys match torch's, so torch weights load directly."""

from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from .transformer import (
    DeepNormEncoderLayer,
    DyTEncoderLayer,
    MultiheadAttention,
    TransformerEncoderLayer,
)

__all__ = [
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "resnet18",
    "resnet34",
    "resnet50",
    "MultiheadAttention",
    "TransformerEncoderLayer",
    "DeepNormEncoderLayer",
    "DyTEncoderLayer",
]
