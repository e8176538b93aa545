"""Batch-level normalisation and augmentation, on the training device.

Applied to a whole batch at once (on the GPU when there is one) rather than
per image in DataLoader workers: it is then a handful of tensor ops per
batch, and the loader only copies cached arrays. Randomness comes from an
explicit ``torch.Generator`` seeded per epoch, so a resumed run replays the
same augmentations as an uninterrupted one.

Horizontal flips are deliberately absent: preprocessing puts every breast's
chest wall on the left, and a flip would undo that normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ImageNet statistics collapsed to one grey channel (timm adapts RGB weights
# to in_chans=1 by summing, which expects inputs on this scale).
GRAY_MEAN = 0.449
GRAY_STD = 0.226


@dataclass(frozen=True)
class AugmentSettings:
    vflip_p: float = 0.5
    max_rotation_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.1
    contrast: float = 0.1


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """Integer images → float in [0, 1] (uint8 or uint16 range by dtype)."""
    scale = 255.0 if batch.dtype == torch.uint8 else 65535.0
    return batch.float().div_(scale)


def normalize(x: torch.Tensor, mean: float = GRAY_MEAN, std: float = GRAY_STD) -> torch.Tensor:
    return (x - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator,
            settings: AugmentSettings = AugmentSettings()) -> torch.Tensor:
    """Random vertical flip, rotation+scale, brightness/contrast on ``x`` in [0, 1]."""
    n = x.shape[0]
    gen_device = generator.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=gen_device).to(x.device)

    flip = rand(n) < settings.vflip_p
    x = torch.where(flip[:, None, None, None], x.flip(-2), x)
    angle = (rand(n) * 2 - 1) * math.radians(settings.max_rotation_deg)
    low, high = settings.scale_range
    scale = low + rand(n) * (high - low)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    bright = (rand(n) * 2 - 1) * settings.brightness
    contrast = 1 + (rand(n) * 2 - 1) * settings.contrast
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast[:, None, None, None] + mean + bright[:, None, None, None]
    return x.clamp_(0.0, 1.0)
