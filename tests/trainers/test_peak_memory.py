"""Peak memory on CPU is the job process's own peak resident size, not that of the
process it was started from (Linux's ru_maxrss keeps the parent's across fork and exec)."""

from __future__ import annotations

import subprocess
import sys

import pytest

MiB = 1024 * 1024


def resident() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


GROWS = """
import torch
from ftmatrix.trainers.peft_methods import peak_memory, peak_rss

MiB = 1024 * 1024


def resident():
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(x for x in status if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


before = peak_rss()
assert before is not None and before >= resident() > 10 * MiB
block = bytearray(300 * MiB)
block[::4096] = b"\\x01" * len(block[::4096])  # touch every page: resident now
after = peak_memory(torch.device("cpu"))
assert after is not None and after >= before + 250 * MiB, (before, after)
del block  # 300 MiB less resident, but a high-water mark keeps it (the kernel
# updates the mark lazily: it may read a few pages below the largest figure seen)
assert resident() < after - 250 * MiB
assert peak_rss() > after - 16 * MiB
print("ok")
"""


@pytest.mark.slow  # a fresh Python that imports torch: a long test session's own peak
# (set by whatever ran before in it) would hide the growth
@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/status is Linux's")
def test_the_peak_grows_with_what_the_process_touches():
    done = subprocess.run(
        [sys.executable, "-c", GROWS], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.slow  # starts a Python that imports torch
@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/status is Linux's")
def test_a_job_started_from_a_large_process_reports_its_own_peak():
    parent = bytearray(1536 * MiB)
    parent[::4096] = b"\x01" * len(parent[::4096])
    code = (
        "import resource, torch\n"
        "from ftmatrix.trainers.peft_methods import peak_memory\n"
        "print(peak_memory(torch.device('cpu')), "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, maxrss = (int(v) for v in out.stdout.split())
    assert maxrss >= 1536 * MiB  # what getrusage would have said: the parent's size
    assert 10 * MiB < peak < 1024 * MiB  # the child's own: torch and the interpreter
    del parent
