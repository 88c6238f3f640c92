"""nbops.nn: torch-style modules running on nbops kernels. Mirrors :mod:`torch.nn` (forward only, no autograd).

    import numpy as np
    import nbops.nn as nn

    m = nn.Conv2d(16, 33, 3, stride=2)
    y = m(np.random.default_rng(0).standard_normal((20, 16, 50, 100), dtype=np.float32))

Parameters and buffers are plain arrays: NumPy on the cpu, numba device arrays after ``module.to("cuda")``.
``state_dict()`` keys are torch's, so ``load_state_dict(torch_model.state_dict())`` works, and
``from_torch(torch_model)`` converts a whole torch module tree.
"""

from . import init, utils  # noqa: F401
from .activation import (
    CELU,
    ELU,
    GELU,
    GLU,
    SELU,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    LogSoftmax,
    Mish,
    PReLU,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Softsign,
    Tanh,
)
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .convert import from_torch
from .linear import Identity, Linear
from .misc import AlphaDropout, Dropout, Dropout1d, Dropout2d, Embedding, Flatten
from .module import Module, ModuleDict, ModuleList, Parameter, Sequential
from .normalization import (
    DyT,
    BatchNorm1d,
    BatchNorm2d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    LayerNorm,
    RMSNorm,
    SwitchNorm2d,
)
from .pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "ModuleList",
    "ModuleDict",
    "Identity",
    "Linear",
    "Conv1d",
    "Conv2d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "Embedding",
    "BatchNorm1d",
    "BatchNorm2d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "LayerNorm",
    "GroupNorm",
    "RMSNorm",
    "SwitchNorm2d",
    "DyT",
    "MaxPool1d",
    "MaxPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "AlphaDropout",
    "Flatten",
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "SELU",
    "CELU",
    "GELU",
    "SiLU",
    "Mish",
    "Sigmoid",
    "Tanh",
    "Hardtanh",
    "Hardsigmoid",
    "Hardswish",
    "Softplus",
    "Softsign",
    "GLU",
    "PReLU",
    "Softmax",
    "LogSoftmax",
    "from_torch",
    "init",
    "utils",
]
