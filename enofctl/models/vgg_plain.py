"""A plain (residual-free) VGG for conversion, registered in timm as ``vgg7``.

The CQ paper's "7-layer VGG" shape: conv-conv-pool at 128, 256 and 512 channels (times ``width``), average
pooling (an average of spike rates is exact, a max is not), global average pool and one linear classifier.
Follows timm's contract like the other registered models.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models import register_model

from enofctl.models.base import TimmHead, entry_kwargs, scaled_channels


class PlainVGG(TimmHead):
    def __init__(self, channels: tuple[int, ...] = (128, 256, 512), convs_per_stage: int = 2,
                 num_classes: int = 10, in_chans: int = 3, width: float = 1.0, drop_rate: float = 0.0,
                 act_layer: type[nn.Module] = nn.ReLU, global_pool: str = "avg"):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for c in channels:
            cout = scaled_channels(c, width)
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), act_layer(inplace=True)]
                cin = cout
            layers.append(nn.AvgPool2d(2))
        self.features = nn.Sequential(*layers)
        self._init_head(cin, num_classes, drop_rate, global_pool)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # [B, C, H', W']


@register_model
def vgg7(pretrained: bool = False, **kwargs) -> PlainVGG:
    """Plain VGG (CQ paper's 7-layer shape): 2 convs per stage at 128/256/512, average pooling."""
    return PlainVGG(**entry_kwargs(pretrained, kwargs))
