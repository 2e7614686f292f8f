"""Where and in what a job computes: the device, the autocast dtype, cuDNN's search."""

from __future__ import annotations

import torch


def device(wanted: str) -> torch.device:
    """`train.device`: a torch device name, or auto (CUDA, else MPS, else the CPU)."""
    if wanted != "auto":
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.precision`: bf16 on GPUs that support it (auto),
    None (fp32) elsewhere."""
    if precision == "fp32" or device.type == "cpu":
        return None
    if precision == "fp16":
        return torch.float16
    # auto: only where bf16 is native (Ampere on); emulated bf16 (a T4) is slower than fp32
    native = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "bf16" or native:
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """What result.json records: fp32, or the bf16/fp16 autocast dtype."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def describe(device: torch.device) -> str:
    """The device as result.json records it: `cuda (NVIDIA H100 ...)`, `cpu`."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def tune_kernels(device: torch.device) -> None:
    """cuDNN times its convolution algorithms on the first batch of each shape and keeps
    the fastest: every batch of a job has the image size of the matrix (one other shape
    for a short last batch), so the search pays for itself within the first epoch."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
