"""The EnOF-SNN paper's CIFAR ResNets, registered in timm so they are ordinary timm models.

"ResNet20": a 3-conv 64-channel stem + 2x2 average pool, BasicBlocks [2, 2, 2, 2] at 64/128/256/512.
"ResNet19": a single 3x3 conv stem at 128 channels, BasicBlocks [3, 3, 2] at 128/256/512.
``width`` scales every channel count (``width=0.25`` gives a narrow variant that trains on a CPU).
The models follow timm's contract: forward_features / forward_head(pre_logits) / get_classifier /
reset_classifier, activation given as a class (``act_layer``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models import register_model

from enofctl.models.base import TimmHead, entry_kwargs, scaled_channels


def _ch(c: int, width: float) -> int:
    return scaled_channels(c, width)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, act_layer: type[nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = act_layer(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act2 = act_layer(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)  # the last block's act2 is what RepAct turns into ReLU


class EnofResNet(TimmHead):
    def __init__(
        self,
        layers: tuple[int, ...],
        channels: tuple[int, ...],
        stem_channels: int,
        stem_convs: int,
        stem_pool: bool,
        num_classes: int = 10,
        in_chans: int = 3,
        width: float = 1.0,
        drop_rate: float = 0.0,
        act_layer: type[nn.Module] = nn.ReLU,
        global_pool: str = "avg",
    ):
        super().__init__()
        stem_c = _ch(stem_channels, width)
        stem: list[nn.Module] = []
        cin = in_chans
        for _ in range(stem_convs):
            stem += [nn.Conv2d(cin, stem_c, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_c), act_layer(inplace=True)]
            cin = stem_c
        if stem_pool:
            stem.append(nn.AvgPool2d(2))
        self.stem = nn.Sequential(*stem)
        stages = []
        for i, (n, c) in enumerate(zip(layers, channels, strict=True)):
            cout = _ch(c, width)
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, act_layer))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self._init_head(cin, num_classes, drop_rate, global_pool)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # [B, C, H', W']


def _create(pretrained: bool, kwargs: dict, **arch) -> EnofResNet:
    return EnofResNet(**arch, **entry_kwargs(pretrained, kwargs))


@register_model
def resnet20(pretrained: bool = False, **kwargs) -> EnofResNet:
    """EnOF-SNN "ResNet20": 3-conv 64-ch stem + avg-pool, BasicBlocks [2,2,2,2] at 64/128/256/512."""
    return _create(pretrained, kwargs, layers=(2, 2, 2, 2), channels=(64, 128, 256, 512),
                   stem_channels=64, stem_convs=3, stem_pool=True)


@register_model
def resnet19(pretrained: bool = False, **kwargs) -> EnofResNet:
    """EnOF-SNN "ResNet19": 3x3 conv stem at 128 ch, BasicBlocks [3,3,2] at 128/256/512."""
    return _create(pretrained, kwargs, layers=(3, 3, 2), channels=(128, 256, 512),
                   stem_channels=128, stem_convs=1, stem_pool=False)
