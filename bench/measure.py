"""What every load-generator job reports with: the measured part's wall and CPU time, latency percentiles, and
lines to the parent (``bench.runner``). Shared by ``bench.loadgen`` and its sustained-load job."""

import sys
import time


class Measure:
    """Wall and CPU time of the measured part of a job."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self.wall0
        self.cpu_s = time.process_time() - self.cpu0

    def result(self, **extra):
        return {"wall_s": self.wall_s, "loadgen_cpu_s": self.cpu_s, **extra}


def percentiles(values, points=(50, 95, 99)):
    if not values:
        return {f"p{p}": None for p in points}
    ordered = sorted(values)
    return {f"p{p}": ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] for p in points}


def percentiles_ms(seconds):
    return {k: None if v is None else v * 1000 for k, v in percentiles(seconds).items()}


def report(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
