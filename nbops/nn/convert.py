"""``from_torch``: convert a torch module tree into the nbops equivalent, weights and buffers included.

torch is never imported here: the torch module is inspected through its class name, its attributes and its
``state_dict()``.
"""

from collections import OrderedDict

from . import _tensors

__all__ = ["from_torch"]


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


def _torch_name(m):
    """The class name when ``m``'s class comes from torch.nn or torchvision (else None: user-defined classes have
    their own forward, which nbops cannot translate)."""
    cls = type(m)
    root = cls.__module__.split(".", 1)[0]
    if cls.__module__.startswith("torch.nn.") or root == "torchvision":
        return _ALIASES.get(cls.__name__, cls.__name__)
    return None


def _where(path):
    return f"'{path}'" if path else "the root"


def _unsupported(m, path, why=""):
    cls = type(m)
    return NotImplementedError(
        f"from_torch: {cls.__module__}.{cls.__qualname__} at {_where(path)} is not supported by nbops.nn{why}"
    )


def _convert(m, path):
    from .. import nn

    name = _torch_name(m)
    if name in _LEAVES:
        nb_name, kwargs = _LEAVES[name]
        try:
            out = getattr(nn, nb_name)(**kwargs(m))
        except NotImplementedError as e:
            raise _unsupported(m, path, f" ({e})") from None
        children = [child_name for child_name, _ in m.named_children()]
        if children:
            raise _unsupported(m, path, f" (unexpected child module '{children[0]}')")
        return out
    if name in ("Sequential", "ModuleList", "ModuleDict"):
        children = OrderedDict((k, _convert(c, _join(path, k)) if c is not None else None)
                               for k, c in m._modules.items())
        if name == "Sequential":
            return nn.Sequential(children)
        if name == "ModuleList":
            return nn.ModuleList(list(children.values()))
        return nn.ModuleDict(children)
    if name in _COMPOSITES:
        return _COMPOSITES[name](m, path)
    raise _unsupported(m, path)


def _join(path, name):
    return f"{path}.{name}" if path else name


def _check_children(m, path, allowed):
    for name, child in m.named_children():
        if name not in allowed:
            raise _unsupported(m, path, f" (unexpected child module '{name}')")
        _check_supported(child, _join(path, name))


def _check_supported(m, path):
    """Raise for the first unsupported module in ``m``'s tree (used by the composites, which are rebuilt whole)."""
    name = _torch_name(m)
    if name in _LEAVES:
        _convert(m, path)
    elif name in ("Sequential", "ModuleList", "ModuleDict"):
        for k, c in m.named_children():
            _check_supported(c, _join(path, k))
    elif name not in _COMPOSITES:
        raise _unsupported(m, path)


def _mha(m, path):
    from ..models import MultiheadAttention

    if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise _unsupported(m, path, " (separate kdim/vdim, add_bias_kv and add_zero_attn are not)")
    return MultiheadAttention(m.embed_dim, m.num_heads, dropout=m.dropout, bias=m.in_proj_bias is not None,
                              batch_first=m.batch_first, dtype=_tensors.resolve_dtype(m.in_proj_weight.dtype))


def _encoder_layer(m, path):
    from ..models import TransformerEncoderLayer

    code = getattr(m, "activation_relu_or_gelu", 0)
    if _torch_name(m.activation) in _LEAVES:  # a module (keeps e.g. GELU's approximate setting)
        activation = _convert(m.activation, _join(path, "activation"))
    elif code in (1, 2):  # torch.nn.functional.relu / gelu
        activation = "relu" if code == 1 else "gelu"
    else:
        raise _unsupported(m, path, " (its activation must be relu, gelu or a supported activation module)")
    attn = m.self_attn
    _mha(attn, _join(path, "self_attn"))
    return TransformerEncoderLayer(attn.embed_dim, attn.num_heads, dim_feedforward=m.linear1.out_features,
                                   dropout=m.dropout.p, activation=activation, layer_norm_eps=m.norm1.eps,
                                   batch_first=attn.batch_first, norm_first=m.norm_first,
                                   bias=m.linear1.bias is not None,
                                   dtype=_tensors.resolve_dtype(m.linear1.weight.dtype))


def _resnet(m, path):
    from ..models import resnet

    _check_children(m, path, {"conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                              "avgpool", "fc"})
    block = resnet.Bottleneck if _torch_name(m.layer1[0]) == "Bottleneck" else resnet.BasicBlock
    layers = [len(getattr(m, f"layer{i}")) for i in range(1, 5)]
    dilate = [getattr(m, f"layer{i}")[0].conv2.dilation[0] > 1 for i in range(2, 5)]
    first = m.layer1[0]
    groups = first.conv2.groups
    width_per_group = 64
    if block is resnet.Bottleneck:
        width_per_group = first.conv1.out_channels * 64 // (64 * groups)
    return resnet.ResNet(block, layers, num_classes=m.fc.out_features, groups=groups,
                         width_per_group=width_per_group, replace_stride_with_dilation=dilate)


def _block(m, path):
    from ..models import resnet

    cls = resnet.Bottleneck if _torch_name(m) == "Bottleneck" else resnet.BasicBlock
    _check_children(m, path, {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu", "downsample"})
    downsample = None if m.downsample is None else _convert(m.downsample, _join(path, "downsample"))
    inplanes = m.conv1.in_channels
    planes = m.bn3.num_features // cls.expansion if cls is resnet.Bottleneck else m.conv1.out_channels
    groups = m.conv2.groups
    base_width = m.conv1.out_channels * 64 // (planes * groups) if cls is resnet.Bottleneck else 64
    return cls(inplanes, planes, stride=m.conv2.stride[0] if cls is resnet.Bottleneck else m.conv1.stride[0],
               downsample=downsample, groups=groups, base_width=base_width, dilation=m.conv2.dilation[0])


_COMPOSITES = {
    "MultiheadAttention": _mha,
    "TransformerEncoderLayer": _encoder_layer,
    "ResNet": _resnet,
    "BasicBlock": _block,
    "Bottleneck": _block,
}


def from_torch(module):
    """Convert a torch module tree into the equivalent nbops module, with its parameters and buffers.

    Supported: every layer of :mod:`nbops.nn` (Linear, Conv*, ConvTranspose*, Embedding, the norms, pools,
    activations, Dropout, Flatten, Identity, Softmax, LogSoftmax), the containers Sequential / ModuleList /
    ModuleDict, ``torch.nn.MultiheadAttention`` and ``TransformerEncoderLayer`` (as :mod:`nbops.models`' classes),
    and torchvision's ResNet / BasicBlock / Bottleneck. The training flags are copied; the result lives on the cpu
    unless the torch module's parameters are on CUDA, in which case it is moved to cuda.

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
    out = _convert(module, "")
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
