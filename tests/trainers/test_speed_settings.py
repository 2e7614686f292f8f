"""The GPU speed settings do not change the numbers (issue 6), checked on a CPU in fp32.

On a CPU the trainer turns most of them off by itself (no autocast, contiguous
memory, the foreach AdamW), so each one is forced on here through the trainer's own
code path and compared with the same job without it:

- no host synchronisation per step (progress read every `log_every` steps) and
  `inference_mode` for evaluation: the same operations in the same order, so the
  whole job's metrics must be bit-identical;
- fused AdamW (what `optim.build_optimizer` picks on CUDA): the same update computed
  in another order, so equal to fp32 rounding over a whole job;
- channels_last for convolutional models (applied on CUDA to torchvision models): other
  convolution kernels, so one training step equal to fp32 rounding. Not compared over a
  whole job: a BatchNorm ResNet trained from scratch at this size amplifies 1e-6
  differences into different losses within a few steps, which would test the model's
  chaos rather than the setting.

bf16 autocast is left out on purpose: it changes numbers by design, and the issue
allows exactly that.
"""

from __future__ import annotations

import contextlib
import copy
import io

import pytest
import torch

from ftmatrix.config import JobConfig
from ftmatrix.result import read_metrics, read_result
from ftmatrix.trainers import compute, job, loop, models, optim
from tests.tiny import image_job, make_job


def fp32_cpu_job(*, log_every: int) -> dict:
    return image_job(epochs=3, log_every=log_every, precision="fp32", device="cpu")


def trained(tmp_path, name: str, config: dict) -> tuple[list, object]:
    folder = make_job(tmp_path / name, config)
    with contextlib.redirect_stdout(io.StringIO()):
        assert job.main(folder) == 0
    return read_metrics(folder), read_result(folder)


def numbers(rows, result) -> list[float]:
    """Every figure a report shows: per-epoch losses and accuracies, test metrics."""
    per_epoch = [
        x for r in rows for x in (r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy)
    ]
    test = result.test
    return [*per_epoch, test.loss, test.accuracy, test.f1_macro, test.topk or 0.0]


def evaluate_without_inference_mode(monkeypatch) -> None:
    """The evaluation pass under plain `no_grad`, as before `inference_mode`."""
    plain = loop.evaluate.__wrapped__  # the function under its inference_mode decorator

    def evaluate(**kwargs):
        with torch.no_grad():
            return plain(**kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluate)


def fused_adamw(monkeypatch) -> None:
    """The optimizer the trainer builds for a CUDA device, here on the CPU."""
    try:
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)
    except RuntimeError as err:  # a torch build without the CPU fused kernels
        pytest.skip(f"no fused AdamW on this CPU build: {err}")
    build = optim.build_optimizer

    def cuda_path(train, model, *, device):
        built = build(train, model, device="cuda")
        assert built.defaults["fused"]
        return built

    monkeypatch.setattr(optim, "build_optimizer", cuda_path)


def test_no_per_step_sync_and_inference_mode_give_bit_identical_metrics(tmp_path, monkeypatch):
    fast = trained(tmp_path, "fast", fp32_cpu_job(log_every=1000))  # one read per epoch
    evaluate_without_inference_mode(monkeypatch)
    slow = trained(tmp_path, "slow", fp32_cpu_job(log_every=1))  # .item() every step
    assert fast[1].device == "cpu"
    assert compute.autocast("fp32", torch.device("cpu")) is None  # both ran in fp32
    assert len(fast[0]) == 3 and fast[1].test.n > 0
    assert numbers(*fast) == numbers(*slow)


def test_fused_adamw_matches_the_default_to_fp32_rounding_over_a_job(tmp_path, monkeypatch):
    default = trained(tmp_path, "default", fp32_cpu_job(log_every=10))  # foreach on a CPU
    fused_adamw(monkeypatch)
    fused = trained(tmp_path, "fused", fp32_cpu_job(log_every=10))
    assert numbers(*fused) == pytest.approx(numbers(*default), rel=1e-6, abs=1e-6)


def test_channels_last_resnet_step_matches_contiguous_to_fp32_rounding():
    cfg = JobConfig.model_validate(
        {
            "task": "image-classification",
            "data": {"builtin": "digits"},
            "model": {"name": "resnet18", "pretrained": False, "image_size": 16},
        }
    )
    torch.manual_seed(0)
    built = models.build(cfg, 10)
    x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))
    results = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        model = copy.deepcopy(built.model).to(memory_format=memory_format)
        # SGD: an update linear in the gradient (Adam's first step is about sign(g), which
        # turns rounding on a near-zero gradient into a whole learning-rate step)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        out = models.logits(built, model, x)
        torch.nn.functional.cross_entropy(out, y).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        results.append((out.detach(), grads, [p.detach().clone() for p in model.parameters()]))
    (out_a, grads_a, params_a), (out_b, grads_b, params_b) = results
    assert next(p for p in params_b if p.dim() == 4).is_contiguous(
        memory_format=torch.channels_last
    )
    torch.testing.assert_close(out_b, out_a, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_a, grads_b, strict=True):
        scale = float(a.abs().max())  # a sum of many products: rounding scales with it
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * scale + 1e-8)
    for a, b in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
