"""The live view's ETA: with several jobs at a time (--workers, --gpus) it divides the
work left among the slots, so a uniform matrix gets the real remaining time."""

from __future__ import annotations

import io
import types

import pytest
from rich.console import Console

from ftmatrix.runner import progress


def simulate(durations: list[float], slots: int, monkeypatch) -> list[tuple[float, float]]:
    """Run jobs of these durations on `slots` slots through the real Live display with
    a fake clock: (ETA shown, real time left) at each job's end."""
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    live = progress.Live(Console(file=io.StringIO(), force_terminal=True, width=120))
    jobs = [types.SimpleNamespace(id=f"job{i}", label=f"job {i}") for i in range(len(durations))]
    live.start(len(jobs), len(jobs))
    live.slots = slots
    ends: list[tuple[float, int]] = []  # (when, job index), the running jobs
    queue = list(range(len(jobs)))
    for _ in range(slots):
        i = queue.pop(0)
        live.job_started(jobs[i])
        ends.append((durations[i], i))
    finished_at: list[float] = []
    shown: list[float] = []
    while ends:
        ends.sort()
        when, i = ends.pop(0)
        clock[0] = when
        live.job_finished(jobs[i], "done", None, durations[i])
        info = live.bars.tasks[0].fields["info"]
        shown.append(float(info.removeprefix("ETA ").removesuffix(" s")))
        finished_at.append(when)
        if queue:
            j = queue.pop(0)
            live.job_started(jobs[j])
            ends.append((when + durations[j], j))
    live.close()
    last = max(finished_at)
    return [(eta, last - when) for eta, when in zip(shown, finished_at, strict=True)]


@pytest.mark.parametrize("slots", [2, 3])
def test_the_eta_with_parallel_slots_is_within_30_percent_of_the_time_left(slots, monkeypatch):
    durations = [10.0, 10.4, 9.7, 10.2, 9.9, 10.3, 9.8, 10.1, 10.0, 9.6, 10.5, 9.9]
    for eta, real in simulate(durations, slots, monkeypatch)[:-slots]:
        assert eta == pytest.approx(real, rel=0.3), (eta, real)
    # one slot: the plain sum of what is left, as before
    for eta, real in simulate(durations, 1, monkeypatch)[:-1]:
        assert eta == pytest.approx(real, rel=0.3), (eta, real)


def test_the_eta_counts_the_time_the_running_jobs_still_need():
    # two slots, one job queued, one running for 6 s of its 10: 10 s until both are done
    assert progress.eta(queued=1, running=[6.0], mean=10.0, slots=2) == pytest.approx(10.0)
    # nothing queued: what the longest running job still needs
    assert progress.eta(queued=0, running=[2.0, 9.0], mean=10.0, slots=2) == pytest.approx(8.0)
    # eight queued on four slots, none running: two rounds
    assert progress.eta(queued=8, running=[], mean=5.0, slots=4) == pytest.approx(10.0)
