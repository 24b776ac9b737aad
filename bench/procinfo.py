"""Memory and CPU of server processes, read from /proc (Linux)."""

import os
import threading
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def status(pid):
    """``VmRSS`` and ``VmHWM`` of ``pid`` in bytes (None when the process is gone)."""
    values = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def rss(pids):
    """Summed resident memory of ``pids`` in bytes."""
    return sum((status(pid) or {}).get("VmRSS", 0) for pid in pids)


def hwm(pids):
    """Summed peak resident memory (``VmHWM``, since start or the last ``reset_peak``) in bytes."""
    return sum((status(pid) or {}).get("VmHWM", 0) for pid in pids)


def reset_peak(pids):
    """Reset ``VmHWM`` to the current RSS (``echo 5 > /proc/PID/clear_refs``); False where not permitted."""
    ok = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def cpu_seconds(pids):
    """User + system CPU seconds used so far by ``pids`` (their threads included)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def machine_busy_seconds():
    """CPU seconds all cores have spent busy since boot (``/proc/stat``: everything but idle and iowait)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_map():
    """``{ppid: [pid, …]}`` for every process."""
    result = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        result.setdefault(int(fields[1]), []).append(int(entry.name))
    return result


def descendants(pid):
    tree = children_map()
    found, stack = [], [pid]
    while stack:
        for child in tree.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def pids_named(name):
    """Every process whose ``comm`` is ``name``."""
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit() and comm(entry.name) == name]


def comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class PeakSampler:
    """Samples the summed RSS of ``pids`` every ``interval`` seconds in a thread; ``peak`` afterwards."""

    def __init__(self, pids, interval=0.01):
        self.pids = list(pids)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pids))
            time.sleep(self.interval)

    def __enter__(self):
        if self.pids:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.peak = max(self.peak, rss(self.pids))
