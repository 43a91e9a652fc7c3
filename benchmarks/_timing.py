"""The benchmarks' one timing harness: ``torch.utils.benchmark.Timer`` per function, repeats interleaved.

``interleaved({"course": f, "torchvision": g}, repeats)`` times each zero-argument function once per round
with its own ``Timer`` (``blocked_autorange``: a warm-up call first, then timed blocks; with the default
``min_run_time=0`` one timed call), alternating which goes first, so that load from other programs hits
both alike; each function's rounds are merged into one ``Measurement`` (``.median`` in seconds).
``compare(measurements)`` prints ``torch.utils.benchmark.Compare``'s table of them.

Import it as ``from _timing import ...``: the scripts run as ``python benchmarks/bench_*.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch.utils import benchmark

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU time


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, clock: str = "wall", label: str = "",
                sub_label: str = "", min_run_time: float = 0.0) -> dict[str, benchmark.Measurement]:
    """One merged ``Measurement`` per name of ``fns``, from ``repeats`` interleaved rounds.

    The timers run with torch's current thread count (``Timer`` would otherwise set 1 thread).
    """
    threads = torch.get_num_threads()
    timers = {name: benchmark.Timer("fn()", globals={"fn": fn}, timer=CLOCKS[clock], label=label,
                                    sub_label=sub_label, description=name, num_threads=threads)
              for name, fn in fns.items()}
    names = list(fns)
    rounds: dict[str, list[benchmark.Measurement]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            rounds[name].append(timers[name].blocked_autorange(min_run_time=min_run_time))
    return {name: benchmark.Measurement.merge(ms)[0] for name, ms in rounds.items()}


def compare(measurements: Iterable[benchmark.Measurement], title: str = "") -> None:
    """Print ``torch.utils.benchmark.Compare``'s table (medians, trimmed to significant figures)."""
    table = benchmark.Compare(list(measurements))
    table.trim_significant_figures()
    if title:
        print(title)
    table.print()
