"""nbops: Numba-JIT kernels for deep-learning operators, with PyTorch's semantics.

Hand it NumPy arrays (or CPU torch tensors) and the ``@njit(parallel=True)`` CPU kernels run; hand it CUDA arrays
(numba device arrays, CuPy arrays, torch CUDA tensors) and the ``@cuda.jit`` kernels run on the device, with no
copy to the host. Function names, parameters and defaults mirror ``torch`` and ``torch.nn.functional``.
"""

import os as _os

from ._cache import ensure_cache_dir as _ensure_cache_dir

_ensure_cache_dir(_os.path.dirname(__file__))

from ._hostpool import empty_cache, set_host_cache_limit  # noqa: E402
from ._runtime import get_num_threads, set_num_threads  # noqa: E402

# public ops, one import line per family, sorted by family
from .ops.activation import celu, elu, gelu, glu, hardsigmoid, hardswish, hardtanh, leaky_relu, log_softmax, mish, prelu, relu, relu6, selu, sigmoid, silu, softmax, softplus, softsign, tanh  # noqa: E402,E501
from .ops.conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d  # noqa: E402
from .ops.dropout import alpha_dropout, dropout, dropout1d, dropout2d, dropout3d  # noqa: E402
from .ops.embedding import embedding  # noqa: E402
from .ops.linear import addmm, baddbmm, bmm, linear, matmul, mm  # noqa: E402
from .ops.norm import batch_norm, deep_norm, deep_norm_coefficients, dyt, group_norm, instance_norm, layer_norm, rms_norm, switch_norm  # noqa: E402,E501
from .ops.pointwise import abs, add, clamp, div, exp, log, maximum, minimum, mul, neg, pow, sqrt, sub, where  # noqa: E402,A004,E501
from .ops.pooling import adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_max_pool1d, adaptive_max_pool2d, avg_pool1d, avg_pool2d, max_pool1d, max_pool2d  # noqa: E402,E501
from .ops.reduction import amax, amin, argmax, argmin, logsumexp, max, mean, min, prod, std, std_mean, sum, var, var_mean  # noqa: E402,A004,E501
from .ops.shape import cat, chunk, contiguous, expand, flatten, narrow, permute, reshape, split, squeeze, stack, transpose, unsqueeze, view  # noqa: E402,E501
from ._random import manual_seed  # noqa: E402
from ._arrays import cuda_stream  # noqa: E402
from ._dispatch import PUBLIC_OPS as _PUBLIC_OPS  # noqa: E402

__version__ = "0.1.0"
__all__ = ["cuda_stream", "empty_cache", "get_num_threads", "manual_seed", "set_host_cache_limit",
           "set_num_threads"] + sorted(_PUBLIC_OPS)
