"""Training augmentation on whole batches of images in [0, 1], each image with its own draws from a seeded
generator: random crop and flip, torchvision's AutoAugment (CIFAR-10 policy) and Cutout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from enofctl.datasets.registry import DatasetInfo


@dataclass(frozen=True)
class Augment:
    """Training augmentation of a batch of images in [0, 1], applied in this order, per image."""

    crop_flip: bool = True  # random crop (zero padding of info.crop_pad) and horizontal flip (if info.hflip)
    autoaugment: bool = False  # torchvision's CIFAR-10 AutoAugment policy (RGB images)
    cutout: int = 0  # side of one square set to the dataset mean (0 after normalization); 0 = off

    def apply(self, x: torch.Tensor, info: DatasetInfo, generator: torch.Generator | None) -> torch.Tensor:
        if self.crop_flip:
            x = augment_batch(x, info.crop_pad, info.hflip, generator)
        if self.autoaugment:
            x = autoaugment(x, generator)
        if self.cutout:
            x = cutout(x, self.cutout, generator, fill=info.mean)
        return x


def augment_batch(x: torch.Tensor, pad: int, hflip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, per sample, on a whole batch (on any device;
    the draws come from ``generator``, a CPU one, so they are the same on every device)."""
    b, _, h, w = x.shape
    if pad:
        xp = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]  # [B, 1, H, 1]
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])[:, None, None, :]  # [B, 1, 1, W]
        bidx = torch.arange(b, device=x.device)[:, None, None, None]
        cidx = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = xp[bidx, cidx, rows, cols]
    if hflip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def cutout(x: torch.Tensor, size: int, generator: torch.Generator | None = None,
           fill: tuple[float, ...] | None = None) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): per image, a ``size`` x ``size`` square around a uniformly drawn
    centre, clipped at the borders, set to ``fill`` (per channel; None = 0) in every channel."""
    b, c, h, w = x.shape
    cy = torch.randint(0, h, (b, 1), generator=generator)  # centres, [B, 1]
    cx = torch.randint(0, w, (b, 1), generator=generator)
    y0, x0 = cy - size // 2, cx - size // 2
    rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
    in_rows = (rows >= y0) & (rows < y0 + size)  # [B, H]
    in_cols = (cols >= x0) & (cols < x0 + size)  # [B, W]
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None].to(x.device)  # [B, 1, H, W]
    value = torch.zeros((), dtype=x.dtype, device=x.device) if fill is None else \
        torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    return torch.where(mask, value, x)


def autoaugment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """torchvision's AutoAugment with its CIFAR-10 policy, one sub-policy drawn per image, on a batch
    ``[B, 3, H, W]``: uint8, or float in [0, 1] (rounded to 8 bits, as the images were stored; returned as
    float in [0, 1]). The draws come from ``generator``; the global RNG is left as it was."""
    from torchvision.transforms import v2

    policy = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    x8 = x if x.dtype == torch.uint8 else x.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):  # torchvision draws from the global RNG
        torch.manual_seed(seed)
        out = torch.stack([policy(img) for img in x8])  # per image: a batch call would share one draw
    return out if x.dtype == torch.uint8 else out.to(x.dtype).div_(255)
