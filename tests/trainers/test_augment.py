"""Batched augmentation: each image its own draw, torchvision's parameter ranges, and
the identity where a step is off."""

from __future__ import annotations

import math

import pytest
import torch

from ftmatrix.config import AugmentConfig
from ftmatrix.trainers.augment import RATIO, BatchAugment


def spec(**fields) -> AugmentConfig:
    off = {"resized_crop": False, "horizontal_flip": 0.0}
    return AugmentConfig(enabled=True, **{**off, **fields})


def images(n: int = 64, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=_gen())


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(1)


def test_every_step_off_is_the_identity_in_0_1():
    x = images()
    out = BatchAugment(spec(), 32)(x)
    assert out.dtype == torch.float32 and torch.equal(out, x.float() / 255)


def test_crop_boxes_follow_random_resized_crop():
    torch.manual_seed(0)
    boxes = BatchAugment(spec(resized_crop=True, crop_scale=(0.3, 0.9)), 16).crop_boxes(
        4000, 48, 64
    )
    left, top, right, bottom = boxes.unbind(1)
    w, h = right - left, bottom - top
    assert (left >= 0).all() and (top >= 0).all() and (right <= 64).all() and (bottom <= 48).all()
    assert torch.equal(boxes, boxes.round())  # whole pixels, as torchvision draws them
    area = w * h / (48 * 64)
    # rounding w and h moves the area a little past the drawn range, never far
    assert area.min() > 0.3 * 0.9 and area.max() < 0.9 * 1.1
    assert (w / h).min() > RATIO[0] * 0.9 and (w / h).max() < RATIO[1] * 1.1
    # the draws spread over the range (not one box for the batch)
    assert area.std() > 0.1 and len({tuple(b) for b in boxes.tolist()}) > 3000
    lows = (area < 0.45).float().mean()
    assert 0.15 < lows < 0.35  # uniform in area: about a quarter below 0.45


def test_a_whole_image_box_is_the_image_and_crops_resize_each_image_alone():
    aug = BatchAugment(spec(resized_crop=True), 32)
    x = images(8)
    whole = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).repeat(8, 1)
    aug.crop_boxes = lambda n, h, w: whole
    assert torch.allclose(aug(x), x.float() / 255, atol=1e-6)
    # each image cropped alone: image k, filled with the value 3k, stays 3k everywhere
    torch.manual_seed(0)
    flat = (torch.arange(8, dtype=torch.uint8) * 3).view(8, 1, 1, 1).expand(8, 3, 32, 32)
    del aug.crop_boxes  # the drawn boxes again
    out = BatchAugment(spec(resized_crop=True, crop_scale=(0.1, 0.5)), 16)(flat)
    assert out.shape == (8, 3, 16, 16)
    assert torch.allclose(out, flat[:, :, :16, :16].float() / 255, atol=1e-6)


def test_grayscale_and_jitter_draw_per_image_and_stay_in_range():
    torch.manual_seed(0)
    x = images(200)
    grey = BatchAugment(spec(grayscale=0.5), 32)(x)
    is_grey = (grey[:, 0] == grey[:, 1]).all(dim=(1, 2)) & (grey[:, 1] == grey[:, 2]).all(
        dim=(1, 2)
    )
    assert 60 < is_grey.sum() < 140
    assert torch.equal(grey[~is_grey], x[~is_grey].float() / 255)

    jittered = BatchAugment(spec(color_jitter=0.4), 32)(x)
    assert jittered.min() >= 0 and jittered.max() <= 1
    ratio = jittered.mean(dim=(1, 2, 3)) / (x.float() / 255).mean(dim=(1, 2, 3))
    assert ratio.std() > 0.05  # each image its own factors
    assert ratio.min() > 0.3 and ratio.max() < 1.6


def test_affine_rotates_about_the_centre_and_translates_by_the_fraction():
    torch.manual_seed(0)
    x = torch.zeros(1, 3, 33, 33, dtype=torch.uint8)
    x[:, :, 16, 16:] = 255  # a ray from the centre to the right edge
    aug = BatchAugment(spec(affine_degrees=180.0), 33)
    rotated = aug(x.repeat(64, 1, 1, 1))
    assert torch.allclose(rotated[:, :, 16, 16], torch.ones(64, 3), atol=0.05)  # centre fixed
    # the ray ends up pointing in many directions: its centroid's angle, in 30° bins
    coords = torch.arange(33, dtype=torch.float32) - 16
    weight = rotated[:, 0].clone()
    weight[:, 14:19, 14:19] = 0  # the centre says nothing about the direction
    cy = (weight.sum(dim=2) * coords).sum(dim=1) / weight.sum(dim=(1, 2))
    cx = (weight.sum(dim=1) * coords).sum(dim=1) / weight.sum(dim=(1, 2))
    bins = torch.floor(torch.atan2(cy, cx) / (math.pi / 6))
    assert len(set(bins.tolist())) >= 9
    moved = BatchAugment(spec(affine_translate=0.25), 33)(x.repeat(64, 1, 1, 1))
    rows = moved[:, 0].sum(dim=2).argmax(dim=1).float() - 16  # the ray's row, shifted
    assert rows.abs().max() <= math.ceil(0.25 * 33) and rows.std() > 2


def test_the_same_seed_draws_the_same_batch():
    x = images()
    aug = BatchAugment(
        spec(resized_crop=True, horizontal_flip=0.5, affine_degrees=10, color_jitter=0.2), 24
    )
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    b = aug(x)
    torch.manual_seed(4)
    c = aug(x)
    assert a.shape == (64, 3, 24, 24) and torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_draws_what_the_cpu_draws():
    x = images()
    aug = BatchAugment(spec(resized_crop=True, horizontal_flip=0.5, color_jitter=0.2), 24)
    torch.manual_seed(5)
    cpu = aug(x)
    torch.manual_seed(5)
    gpu = aug(x.cuda()).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)
