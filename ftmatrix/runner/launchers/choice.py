"""Which launcher a run gets (`ftmatrix run --launcher auto|server|forkserver|spawn`)."""

from __future__ import annotations

import sys

from ftmatrix.runner.launchers import warm
from ftmatrix.runner.launchers.forkserver import ForkServerLauncher
from ftmatrix.runner.launchers.process import Launcher
from ftmatrix.runner.launchers.spawn import SpawnLauncher

NAMES = ("auto", "server", "forkserver", "spawn")


def choose(name: str = "auto") -> Launcher:
    """The launcher asked for; auto: a warm server where one runs for this code and
    setting (`ftmatrix server start`), else the fork server where fork is safe, else
    spawn. `server` without a warm server is a LookupError.

    auto takes spawn off Linux (fork without exec is unsafe or unsupported on macOS and
    Windows) and in a parent that has already initialised CUDA (a notebook or script
    calling the runner after touching the GPU): a CUDA context cannot cross a fork, and
    a fresh interpreter per job is the one launcher that never depends on what the
    parent holds. An explicit `forkserver` is honoured as asked."""
    if name not in NAMES:
        raise ValueError(f"the launcher must be one of {', '.join(NAMES)}, not {name!r}")
    if name == "spawn":
        return SpawnLauncher()
    if name == "auto" and (not sys.platform.startswith("linux") or cuda_initialised()):
        return SpawnLauncher()
    if name in ("auto", "server"):
        if served := warm.connect():
            return served
        if name == "server":
            raise LookupError(
                "no warm server runs for this code and setting; start one with "
                "`ftmatrix server start` (it must see the same HF_*/TORCH* variables)"
            )
    return ForkServerLauncher()


def cuda_initialised() -> bool:
    """Whether this process has initialised CUDA; never imports torch to find out (a
    parent that has not imported it cannot have initialised CUDA)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    return bool(cuda is not None and cuda.is_initialized())
