"""``from_torch``: convert a torch module tree into the nbops equivalent, weights and buffers included.

torch is never imported here: the torch module is inspected through its class name, its attributes and its
``state_dict()``.
"""

import importlib
from collections import OrderedDict

from . import _tensors

__all__ = ["from_torch", "register_converter"]


def _attrs(*names):
    return lambda m: {n: getattr(m, n) for n in names}


def _dtype(m):
    w = getattr(m, "weight", None)
    return {"dtype": _tensors.resolve_dtype(w.dtype)} if w is not None else {}


def _conv(m):
    return dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=m.kernel_size,
                stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
                padding_mode=m.padding_mode, **_dtype(m))


def _conv_transpose(m):
    return dict(_conv(m), output_padding=m.output_padding)


def _norm(m):
    return dict(num_features=m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                track_running_stats=m.track_running_stats, bias=getattr(m, "bias", None) is not None or not m.affine,
                **_dtype(m))


# torch class name -> (nbops.nn class name, constructor keyword arguments read from the torch module)
_LEAVES = {
    "Identity": ("Identity", lambda m: {}),
    "Linear": ("Linear", lambda m: dict(in_features=m.in_features, out_features=m.out_features,
                                        bias=m.bias is not None, **_dtype(m))),
    "Conv1d": ("Conv1d", _conv),
    "Conv2d": ("Conv2d", _conv),
    "ConvTranspose1d": ("ConvTranspose1d", _conv_transpose),
    "ConvTranspose2d": ("ConvTranspose2d", _conv_transpose),
    "Embedding": ("Embedding", lambda m: dict(num_embeddings=m.num_embeddings, embedding_dim=m.embedding_dim,
                                              padding_idx=m.padding_idx, max_norm=m.max_norm,
                                              norm_type=m.norm_type, scale_grad_by_freq=m.scale_grad_by_freq,
                                              sparse=m.sparse, **_dtype(m))),
    "BatchNorm1d": ("BatchNorm1d", _norm),
    "BatchNorm2d": ("BatchNorm2d", _norm),
    "InstanceNorm1d": ("InstanceNorm1d", _norm),
    "InstanceNorm2d": ("InstanceNorm2d", _norm),
    "LayerNorm": ("LayerNorm", lambda m: dict(normalized_shape=m.normalized_shape, eps=m.eps,
                                              elementwise_affine=m.elementwise_affine,
                                              bias=getattr(m, "bias", None) is not None or not m.elementwise_affine,
                                              **_dtype(m))),
    "GroupNorm": ("GroupNorm", lambda m: dict(num_groups=m.num_groups, num_channels=m.num_channels, eps=m.eps,
                                              affine=m.affine, bias=m.bias is not None or not m.affine,
                                              **_dtype(m))),
    "RMSNorm": ("RMSNorm", lambda m: dict(normalized_shape=m.normalized_shape, eps=m.eps,
                                          elementwise_affine=m.elementwise_affine, **_dtype(m))),
    "MaxPool1d": ("MaxPool1d", _attrs("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")),
    "MaxPool2d": ("MaxPool2d", _attrs("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode")),
    "AvgPool1d": ("AvgPool1d", _attrs("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")),
    "AvgPool2d": ("AvgPool2d", _attrs("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                      "divisor_override")),
    "AdaptiveAvgPool1d": ("AdaptiveAvgPool1d", _attrs("output_size")),
    "AdaptiveAvgPool2d": ("AdaptiveAvgPool2d", _attrs("output_size")),
    "AdaptiveMaxPool1d": ("AdaptiveMaxPool1d", _attrs("output_size", "return_indices")),
    "AdaptiveMaxPool2d": ("AdaptiveMaxPool2d", _attrs("output_size", "return_indices")),
    "Dropout": ("Dropout", _attrs("p", "inplace")),
    "Dropout1d": ("Dropout1d", _attrs("p", "inplace")),
    "Dropout2d": ("Dropout2d", _attrs("p", "inplace")),
    "AlphaDropout": ("AlphaDropout", _attrs("p", "inplace")),
    "Flatten": ("Flatten", _attrs("start_dim", "end_dim")),
    "ReLU": ("ReLU", _attrs("inplace")),
    "ReLU6": ("ReLU6", _attrs("inplace")),
    "SELU": ("SELU", _attrs("inplace")),
    "SiLU": ("SiLU", _attrs("inplace")),
    "Mish": ("Mish", _attrs("inplace")),
    "Hardsigmoid": ("Hardsigmoid", _attrs("inplace")),
    "Hardswish": ("Hardswish", _attrs("inplace")),
    "LeakyReLU": ("LeakyReLU", _attrs("negative_slope", "inplace")),
    "ELU": ("ELU", _attrs("alpha", "inplace")),
    "CELU": ("CELU", _attrs("alpha", "inplace")),
    "GELU": ("GELU", _attrs("approximate")),
    "Sigmoid": ("Sigmoid", lambda m: {}),
    "Tanh": ("Tanh", lambda m: {}),
    "Softsign": ("Softsign", lambda m: {}),
    "Hardtanh": ("Hardtanh", _attrs("min_val", "max_val", "inplace")),
    "Softplus": ("Softplus", _attrs("beta", "threshold")),
    "GLU": ("GLU", _attrs("dim")),
    "PReLU": ("PReLU", lambda m: dict(num_parameters=m.num_parameters, **_dtype(m))),
    "Softmax": ("Softmax", _attrs("dim")),
    "LogSoftmax": ("LogSoftmax", _attrs("dim")),
}

# torch subclasses that behave exactly like a listed class
_ALIASES = {"NonDynamicallyQuantizableLinear": "Linear"}


def torch_name(m):
    """The class name when ``m``'s class comes from torch.nn or torchvision (else None: user-defined classes have
    their own forward, which nbops cannot translate)."""
    cls = type(m)
    root = cls.__module__.split(".", 1)[0]
    if cls.__module__.startswith("torch.nn.") or root == "torchvision":
        return _ALIASES.get(cls.__name__, cls.__name__)
    return None


def _where(path):
    return f"'{path}'" if path else "the root"


def unsupported(m, path, why=""):
    """The NotImplementedError that names ``m``'s class and its dotted ``path`` (``why``: an optional reason)."""
    cls = type(m)
    return NotImplementedError(
        f"from_torch: {cls.__module__}.{cls.__qualname__} at {_where(path)} is not supported by nbops.nn{why}"
    )


def is_leaf(m):
    """True when ``m`` is a torch layer that maps onto one :mod:`nbops.nn` layer."""
    return torch_name(m) in _LEAVES


def convert(m, path):
    """The nbops module for torch module ``m`` found at dotted ``path`` (no weights loaded yet)."""
    from .. import nn

    name = torch_name(m)
    if name in _LEAVES:
        nb_name, kwargs = _LEAVES[name]
        try:
            out = getattr(nn, nb_name)(**kwargs(m))
        except NotImplementedError as e:
            raise unsupported(m, path, f" ({e})") from None
        children = [child_name for child_name, _ in m.named_children()]
        if children:
            raise unsupported(m, path, f" (unexpected child module '{children[0]}')")
        return out
    if name in ("Sequential", "ModuleList", "ModuleDict"):
        children = OrderedDict((k, convert(c, join_path(path, k)) if c is not None else None)
                               for k, c in m._modules.items())
        if name == "Sequential":
            return nn.Sequential(children)
        if name == "ModuleList":
            return nn.ModuleList(list(children.values()))
        return nn.ModuleDict(children)
    if name in _COMPOSITES:
        return _COMPOSITES[name](m, path)
    raise unsupported(m, path)


def join_path(path, name):
    """The dotted path of child ``name`` of the module at ``path``."""
    return f"{path}.{name}" if path else name


def check_children(m, path, allowed):
    """Raise :func:`unsupported` unless every child of ``m`` is named in ``allowed`` and convertible."""
    for name, child in m.named_children():
        if name not in allowed:
            raise unsupported(m, path, f" (unexpected child module '{name}')")
        _check_supported(child, join_path(path, name))


def _check_supported(m, path):
    """Raise for the first unsupported module in ``m``'s tree (used by the composites, which are rebuilt whole)."""
    name = torch_name(m)
    if name in _LEAVES:
        convert(m, path)
    elif name in ("Sequential", "ModuleList", "ModuleDict"):
        for k, c in m.named_children():
            _check_supported(c, join_path(path, k))
    elif name not in _COMPOSITES:
        raise unsupported(m, path)


# torch class name -> converter(m, path) for modules rebuilt whole (ResNets, attention, encoder layers); the
# packages that define those classes fill it in with register_converter when they are imported
_COMPOSITES = {}
# packages that register converters; from_torch imports them on its first call, so nbops.nn itself never imports
# them (they are built from nbops.nn: the import arrow runs one way, from them to nn)
_CONVERTER_PACKAGES = ("nbops.models",)


def register_converter(name, fn):
    """Make ``from_torch`` turn torch modules of class ``name`` (torch.nn or torchvision) into ``fn(m, path)``,
    an nbops module rebuilt whole; ``fn`` raises :func:`unsupported` for variants it cannot represent."""
    _COMPOSITES[name] = fn
    return fn


def _load_converters():
    for package in _CONVERTER_PACKAGES:
        importlib.import_module(package)


def from_torch(module):
    """Convert a torch module tree into the equivalent nbops module, with its parameters and buffers.

    Supported: every layer of :mod:`nbops.nn` (Linear, Conv*, ConvTranspose*, Embedding, the norms, pools,
    activations, Dropout, Flatten, Identity, Softmax, LogSoftmax), the containers Sequential / ModuleList /
    ModuleDict, ``torch.nn.MultiheadAttention`` and ``TransformerEncoderLayer`` (as :mod:`nbops.models`' classes),
    and torchvision's ResNet / BasicBlock / Bottleneck (their converters live in :mod:`nbops.models`, which
    registers them with :func:`register_converter`; the first call imports it). The training flags are copied; the
    result lives on the cpu unless the torch module's parameters are on CUDA, in which case it is moved to cuda.

    Args:
        module: a ``torch.nn.Module``.

    Returns:
        the nbops module, whose ``state_dict()`` has the same keys and values as ``module.state_dict()``.

    Raises:
        NotImplementedError: naming the type and dotted path of the first layer nbops cannot represent (a
        user-defined module class, whose forward nbops cannot translate, or an unsupported torch layer).
    """
    if not hasattr(module, "state_dict") or not hasattr(module, "named_children"):
        raise TypeError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    _load_converters()
    out = convert(module, "")
    state = module.state_dict()
    out.load_state_dict(state, strict=True)
    _match_modes(module, out)
    devices = {getattr(getattr(v, "device", None), "type", "cpu") for v in state.values()}
    if "cuda" in devices:
        out.to("cuda")
    return out


def _match_modes(src, dst):
    """Copy the training flag of every torch module onto the nbops module at the same path."""
    nb = dict(dst.named_modules())
    for name, m in src.named_modules():
        if name in nb:
            nb[name].training = m.training
