"""Batch conversion, normalisation and augmentation: ranges, seeding, no horizontal flip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mammography.data.augment import (
    GRAY_MEAN,
    GRAY_STD,
    AugmentSettings,
    augment,
    normalize,
    to_float,
)

# Only one kind of change at a time: everything else off.
IDENTITY = AugmentSettings(vflip_p=0.0, max_rotation_deg=0.0, scale_range=(1.0, 1.0),
                           brightness=0.0, contrast=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def textured_batch(n: int = 8, h: int = 32, w: int = 24, seed: int = 0) -> torch.Tensor:
    """Float images in [0, 1] with no symmetry (flips and shifts are visible)."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(0.1, 0.9, size=(n, 1, h, w)).astype(np.float32))


def chest_wall_left(n: int = 16, h: int = 48, w: int = 48) -> torch.Tensor:
    """A bright band over the left quarter of the columns, the rest dark."""
    x = torch.zeros(n, 1, h, w)
    x[..., : w // 4] = 0.9
    return x


# --------------------------------------------------------------------------- to_float


def test_to_float_uint8_range():
    batch = torch.tensor([[0, 1, 128, 254, 255]], dtype=torch.uint8)
    out = to_float(batch)
    assert out.dtype == torch.float32
    expected = np.array([[0, 1, 128, 254, 255]]) / 255.0
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    assert out.min() == 0.0 and out.max() == 1.0


def test_to_float_uint16_range():
    values = [0, 1, 255, 4095, 32768, 65534, 65535]
    out = to_float(torch.tensor([values], dtype=torch.uint16))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), np.array([values]) / 65535.0, rtol=1e-6)
    # 255 as uint16 is a dark pixel, not white: the scale follows the dtype
    assert out[0, 2].item() == pytest.approx(255 / 65535)


def test_to_float_keeps_shape_and_leaves_the_input_alone():
    batch = torch.randint(0, 65535, (3, 1, 5, 7), dtype=torch.int32).to(torch.uint16)
    before = batch.clone()
    out = to_float(batch)
    assert out.shape == (3, 1, 5, 7)
    assert torch.equal(batch, before) and batch.dtype == torch.uint16


# --------------------------------------------------------------------------- normalize


def test_normalize_uses_the_grey_imagenet_statistics():
    x = torch.tensor([0.0, GRAY_MEAN, 1.0])
    out = normalize(x)
    expected = [-0.449 / 0.226, 0.0, (1 - 0.449) / 0.226]
    assert out.tolist() == pytest.approx(expected, abs=1e-6)
    assert normalize(torch.tensor([3.0]), mean=1.0, std=4.0).item() == 0.5
    assert (GRAY_MEAN, GRAY_STD) == (0.449, 0.226)


# --------------------------------------------------------------------------- augment


def test_shape_dtype_kept_and_input_untouched():
    x = textured_batch()
    before = x.clone()
    out = augment(x, gen(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(x, before)
    assert not torch.equal(out, x)  # it did change something


def test_same_seed_same_output_different_seed_different():
    x = textured_batch()
    assert torch.equal(augment(x, gen(7)), augment(x, gen(7)))
    assert not torch.allclose(augment(x, gen(7)), augment(x, gen(8)), atol=1e-3)


def test_one_generator_gives_a_new_draw_per_call():
    x = textured_batch()
    g = gen(3)
    first, second = augment(x, g), augment(x, g)
    assert not torch.allclose(first, second, atol=1e-3)
    # ... and replaying the seed replays both calls
    g = gen(3)
    assert torch.equal(augment(x, g), first) and torch.equal(augment(x, g), second)


def test_output_is_clamped_to_unit_range():
    strong = AugmentSettings(brightness=0.6, contrast=0.6)
    for fill in (0.0, 1.0):
        x = torch.full((16, 1, 16, 16), fill)
        x[:, :, 4:12, 4:12] = 1.0 - fill  # some contrast for the contrast jitter to stretch
        out = augment(x, gen(1), strong)
        assert out.min().item() >= 0.0 and out.max().item() <= 1.0
        # pre-clamp values beyond the range existed and were cut at the bounds
        assert (out == 1.0).any() and (out == 0.0).any()
    out = augment(textured_batch(32), gen(2), strong)
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0


def test_identity_settings_change_nothing():
    x = textured_batch()
    torch.testing.assert_close(augment(x, gen(0), IDENTITY), x, atol=1e-5, rtol=0)


def test_vertical_flip_only_never_horizontal():
    x = textured_batch(n=64)
    out = augment(x, gen(5), replace(IDENTITY, vflip_p=0.5))
    flipped = kept = 0
    for orig, new in zip(x, out, strict=True):
        if torch.allclose(new, orig.flip(-2), atol=1e-5):
            flipped += 1
        elif torch.allclose(new, orig, atol=1e-5):
            kept += 1
        assert not torch.allclose(new, orig.flip(-1), atol=1e-2)  # never left-right
    assert flipped + kept == 64
    assert 16 < flipped < 48  # p = 0.5 over 64 images (seeded: a fixed count)
    always = augment(x, gen(5), replace(IDENTITY, vflip_p=1.0))
    torch.testing.assert_close(always, x.flip(-2), atol=1e-5, rtol=0)


def test_chest_wall_stays_on_the_left_under_default_augmentation():
    x = chest_wall_left()
    w = x.shape[-1]
    for seed in range(4):
        out = augment(x, gen(seed))
        left = out[..., : w // 2].sum(dim=(1, 2, 3))
        right = out[..., w // 2:].sum(dim=(1, 2, 3))
        assert (left > 2 * right).all(), (seed, left, right)
        # the brightest column of every image stays in the left quarter-and-a-bit
        brightest = out.mean(dim=(1, 2)).argmax(dim=-1)
        assert (brightest < w // 3).all()


def test_rotation_stays_within_the_maximum_angle():
    # A thin vertical line through the centre; rotated by a, its rows shift by tan(a) * dy.
    h = w = 65
    x = torch.zeros(32, 1, h, w)
    x[..., w // 2] = 1.0
    settings = replace(IDENTITY, max_rotation_deg=10.0)
    out = augment(x, gen(11), settings)
    cols = torch.arange(w, dtype=torch.float32)
    row = 0  # the top row lies 32 px from the centre
    centroid = (out[:, 0, row] * cols).sum(-1) / out[:, 0, row].sum(-1)
    shift = (centroid - w // 2).abs()
    assert shift.max().item() <= np.tan(np.radians(10.0)) * (h // 2) + 1.0
    assert shift.max().item() > 1.0  # rotations did happen
    assert len(set(np.round(shift.numpy(), 3))) > 16  # a different angle per image


def test_scale_magnifies_by_the_drawn_factor():
    x = torch.zeros(4, 1, 64, 64)
    x[..., 24:40, 24:40] = 1.0  # a centred 16 x 16 square
    settings = replace(IDENTITY, scale_range=(1.5, 1.5))
    out = augment(x, gen(0), settings)
    # magnified by 1.5 about the centre: area x 2.25
    ratio = out.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert ratio.tolist() == pytest.approx([2.25] * 4, rel=0.03)


def test_brightness_is_one_offset_per_image_within_bounds():
    x = torch.full((32, 1, 8, 8), 0.5)
    settings = replace(IDENTITY, brightness=0.1)
    out = augment(x, gen(4), settings)
    offsets = out.mean(dim=(1, 2, 3)) - 0.5
    spread = (out - out.mean(dim=(1, 2, 3), keepdim=True)).abs().max()
    assert spread.item() < 1e-6  # a uniform shift inside each image
    assert offsets.abs().max().item() <= 0.1 + 1e-6
    assert offsets.min().item() < -0.03 and offsets.max().item() > 0.03
    assert len(set(np.round(offsets.numpy(), 5))) == 32


def test_contrast_scales_deviations_about_each_image_mean():
    low = 0.2 + 0.01 * torch.arange(32.0)  # a different mean per image
    x = low[:, None, None, None].repeat(1, 1, 8, 8)
    x[..., :4] += 0.2  # deviations +-0.1 about the image's mean
    settings = replace(IDENTITY, contrast=0.2)
    out = augment(x, gen(9), settings)
    means = out.mean(dim=(1, 2, 3))
    torch.testing.assert_close(means, x.mean(dim=(1, 2, 3)), atol=1e-5, rtol=0)
    gain = (out[..., 0, 0] - out[..., 0, -1]).flatten() / 0.2  # bright minus dark, 0.2 before
    assert gain.min().item() >= 0.8 - 1e-4 and gain.max().item() <= 1.2 + 1e-4
    assert gain.min().item() < 0.95 and gain.max().item() > 1.05
