"""The training pass itself: loss scaling, clipping, accumulation, NaN detection."""

from __future__ import annotations

import pytest
import torch

from ftmatrix.trainers import loop
from ftmatrix.trainers.models import Built


def one_epoch(*, scaler=None, poison=False, grad_clip=0.5) -> tuple[torch.nn.Module, list]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    built = Built(model, "torchvision", (0.0,) * 3, (1.0,) * 3, head="1")
    batches = [(torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,))) for _ in range(5)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    logged = []
    loop.train_epoch(
        model=model,
        built=built,
        data=batches,
        inputs=loop.Inputs(built, torch.device("cpu"), "image"),
        loss_fn=lambda out, y, x: torch.nn.functional.cross_entropy(out, y),
        optimizer=optimizer,
        schedule=type("NoSchedule", (), {"after_step": lambda self: None})(),
        accumulation=2,
        grad_clip=grad_clip,
        autocast=None,
        log_every=2,
        on_log=lambda *args: logged.append(args),
        check_stop=lambda: None,
        poison=poison,
        scaler=scaler,
    )
    return model, logged


def test_a_loss_scaler_gives_the_same_updates_with_clipping_and_accumulation():
    plain, _ = one_epoch()
    scaled, _ = one_epoch(scaler=torch.amp.GradScaler("cpu", init_scale=2.0**12))
    unclipped, _ = one_epoch(grad_clip=None)
    for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
        torch.testing.assert_close(a, b)  # gradients unscaled before clipping
    assert not torch.allclose(plain[1].weight, unclipped[1].weight)  # the clip mattered


def test_progress_is_logged_every_few_batches_with_the_running_loss():
    _, logged = one_epoch()
    assert [(step, steps) for step, steps, _, _ in logged] == [(2, 5), (4, 5), (5, 5)]
    assert all(loss > 0 and rate > 0 for _, _, loss, rate in logged)


def test_a_nan_loss_stops_the_epoch():
    with pytest.raises(loop.NanLoss, match="step 2"):
        one_epoch(poison=True)


def test_device_augmentation_draws_per_image_then_normalises():
    from ftmatrix.config import AugmentConfig
    from ftmatrix.trainers.augment import BatchAugment

    built = Built(torch.nn.Identity(), "torchvision", (0.5,) * 3, (0.25,) * 3, head="")
    spec = AugmentConfig(enabled=True, resized_crop=False, horizontal_flip=0.5)
    flip = loop.Inputs(built, torch.device("cpu"), "image", transform=BatchAugment(spec, 4))
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8)
    out = flip(images)
    plain = (images.float() / 255 - 0.5) / 0.25
    flipped = [torch.equal(o, p.flip(-1)) for o, p in zip(out, plain, strict=True)]
    kept = [torch.equal(o, p) for o, p in zip(out, plain, strict=True)]
    # every image is either itself or its mirror, and the batch holds both kinds
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54
