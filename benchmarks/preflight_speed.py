"""Pre-flight's model check: in a child of the runner's fork server, or of the warm
server of `ftmatrix server start` (both have imported torch, transformers and peft
already) vs in a process of its own (the baseline: a fresh
interpreter that imports them, as every `ftmatrix run` of a Hugging Face or LoRA matrix
did before the first job).

The check is the same in both: the quickstart's tiny ViT with LoRA built on the meta
device, once. The two take turns, so a slow moment of this shared machine falls on both
alike. The fork server is started (and its imports done) before the first turn, as
`ftmatrix run` starts it while the matrix is validated; its start is not counted, nor
is the warm server's (started once, in a temporary folder, stopped at the end).

    .venv/bin/python benchmarks/preflight_speed.py [ROUNDS]     (default 5)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ftmatrix.matrix import plan  # noqa: E402
from ftmatrix.runner import preflight  # noqa: E402
from ftmatrix.runner.launchers import warm  # noqa: E402
from ftmatrix.runner.launchers.forkserver import ForkServerLauncher  # noqa: E402


def main(rounds: int) -> None:
    jobs = plan.load_plan(ROOT / "matrices" / "quickstart.yaml").jobs
    lora = [j for j in jobs if j.config.lora.enabled][:1]
    where = {"root": Path("/nonexistent-runs"), "base_dir": ROOT}
    launcher = ForkServerLauncher()
    began = time.perf_counter()
    launcher.check_models("[]", timeout=600)  # starts the server: imports, one fork
    print(f"fork server start (not counted): {time.perf_counter() - began:.2f} s")
    os.environ["FTMATRIX_SERVER_DIR"] = tempfile.mkdtemp(prefix="ftmatrix-bench-")
    info, seconds, log = warm.start(idle=600)
    assert info is not None, log.read_text()
    served = warm.connect()
    assert served is not None
    print(f"warm server start (not counted): {seconds:.2f} s")
    asks = {"own process": None, "fork server": launcher.check_models}
    asks["warm server"] = served.check_models
    times: dict[str, list[float]] = {name: [] for name in asks}
    try:
        for _ in range(rounds):
            for name, ask in asks.items():
                began = time.perf_counter()
                found = preflight.check(lora, models=ask, **where)
                times[name].append(time.perf_counter() - began)
                assert not [f for f in found if "model" in f or "lora" in f], found
    finally:
        warm.stop()
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        each = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:>12}: median {median[name]:.2f} s  ({each})")
    for name in ("fork server", "warm server"):
        ratio = median["own process"] / median[name]
        print(f"ratio: the {name} checks the models {ratio:.1f}x faster than a process of")
        print("       its own (the baseline)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
