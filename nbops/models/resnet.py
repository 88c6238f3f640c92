"""ResNet (He et al. 2015) written with nbops.nn, with torchvision's architecture, attribute names and state_dict
keys, so ``model.load_state_dict(torchvision_model.state_dict())`` loads torchvision weights directly."""

import nbops as F  # nbops' top level mirrors torch.nn.functional

from .. import nn
from ..nn import init
from ..nn.convert import check_children, convert, join_path, register_converter, torch_name

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50"]


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    """3x3 convolution with padding, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                     bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution, no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(F.add(out, identity))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride here, as torchvision's v1.5), 1x1 expand, with a residual connection (ResNet-50+)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(F.add(out, identity))


class ResNet(nn.Module):
    """torchvision's ResNet: 7x7/2 stem conv, BN, ReLU, 3x3/2 max pool, four stages of blocks, global average pool
    and a linear classifier.

    Args:
        block: BasicBlock or Bottleneck.
        layers: blocks per stage, e.g. [2, 2, 2, 2] for ResNet-18.
        num_classes: classifier outputs. Default: 1000.
        zero_init_residual: zero the last BN weight of every block. Default: False.
        groups, width_per_group: ResNeXt / wide-ResNet settings. Default: 1, 64.
        replace_stride_with_dilation: three bools, one per stage 2-4. Default: None.
        norm_layer: the normalisation module class. Default: BatchNorm2d.

    Input ``(N, 3, H, W)``; output ``(N, num_classes)``.
    """

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1, width_per_group=64,
                 replace_stride_with_dilation=None, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                "replace_stride_with_dilation should be None or a 3-element tuple, got "
                f"{replace_stride_with_dilation}"
            )
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                init.constant_(m.weight, 1)
                init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation,
                        norm_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                                dilation=self.dilation, norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = F.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18(num_classes=1000, **kwargs):
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]), randomly initialised; load weights with ``load_state_dict``."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, **kwargs)


def resnet34(num_classes=1000, **kwargs):
    """ResNet-34 (BasicBlock, [3, 4, 6, 3])."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


def resnet50(num_classes=1000, **kwargs):
    """ResNet-50 (Bottleneck, [3, 4, 6, 3])."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


def _resnet_from_torch(m, path):
    """``from_torch``'s converter for torchvision's ``ResNet``."""
    check_children(m, path, {"conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool",
                             "fc"})
    block = Bottleneck if torch_name(m.layer1[0]) == "Bottleneck" else BasicBlock
    layers = [len(getattr(m, f"layer{i}")) for i in range(1, 5)]
    dilate = [getattr(m, f"layer{i}")[0].conv2.dilation[0] > 1 for i in range(2, 5)]
    first = m.layer1[0]
    groups = first.conv2.groups
    width_per_group = 64
    if block is Bottleneck:
        width_per_group = first.conv1.out_channels * 64 // (64 * groups)
    return ResNet(block, layers, num_classes=m.fc.out_features, groups=groups, width_per_group=width_per_group,
                  replace_stride_with_dilation=dilate)


def _block_from_torch(m, path):
    """``from_torch``'s converter for torchvision's ``BasicBlock`` and ``Bottleneck``."""
    cls = Bottleneck if torch_name(m) == "Bottleneck" else BasicBlock
    check_children(m, path, {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu", "downsample"})
    downsample = None if m.downsample is None else convert(m.downsample, join_path(path, "downsample"))
    inplanes = m.conv1.in_channels
    planes = m.bn3.num_features // cls.expansion if cls is Bottleneck else m.conv1.out_channels
    groups = m.conv2.groups
    base_width = m.conv1.out_channels * 64 // (planes * groups) if cls is Bottleneck else 64
    return cls(inplanes, planes, stride=m.conv2.stride[0] if cls is Bottleneck else m.conv1.stride[0],
               downsample=downsample, groups=groups, base_width=base_width, dilation=m.conv2.dilation[0])


register_converter("ResNet", _resnet_from_torch)
register_converter("BasicBlock", _block_from_torch)
register_converter("Bottleneck", _block_from_torch)
