"""Runs one load-generator job in its own process and measures it and the server. A job's ``generator`` picks
the load generator: ``python`` (``bench.loadgen``, the default) or ``node`` (``bench/node/loadgen.mjs``)."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

from bench import procinfo
from bench.servers import REPO_ROOT, Unavailable

NODE_LOADGEN = REPO_ROOT / "bench" / "node" / "loadgen.mjs"
# Where the Node generator loads ``ws`` from, as each protocol's real client does (see bench/node/clients.mjs).
INTEROP = REPO_ROOT / "tests" / "interop"
NODE_WS = [INTEROP / "node_modules" / "ws", INTEROP / "v04" / "node_modules" / "ws"]


class JobFailed(RuntimeError):
    pass


def generator_problem(generator):
    """Why ``generator`` cannot run here, or None."""
    if generator == "node":
        if shutil.which("node") is None:
            return "node not found"
        if not all(path.exists() for path in NODE_WS):
            return "the interop suites' node_modules are missing: run `make interop-deps`"
    return None


def loadgen_command(generator):
    problem = generator_problem(generator)
    if problem:
        raise Unavailable(f"the {generator} load generator: {problem}")
    if generator == "node":
        return ["node", str(NODE_LOADGEN)]
    return [sys.executable, "-m", "bench.loadgen"]


def run_job(job, server_pids=(), on_ready=None, timeout=600.0, sample_memory=True, aux_pids=()):
    """Run ``job`` in a child process; returns its result plus ``loadgen_cpu_total_s`` (the child's whole
    CPU, from ``wait4``), ``server_cpu_s`` and ``server_peak_rss`` (sampled) for ``server_pids``.

    ``on_ready(info)`` is called when the job prints ``READY`` (it holds its sockets open until it returns).
    ``aux_pids``: helper processes of the server whose CPU is reported apart (``aux_cpu_s``), e.g. wrangler's.
    """
    server_pids, aux_pids = list(server_pids), list(aux_pids)
    process = subprocess.Popen(
        loadgen_command(job.get("generator", "python")),
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    stderr_lines = []
    stderr_reader = threading.Thread(target=lambda: stderr_lines.extend(process.stderr), daemon=True)
    stderr_reader.start()
    server_cpu0, aux_cpu0 = procinfo.cpu_seconds(server_pids), procinfo.cpu_seconds(aux_pids)
    machine0 = procinfo.machine_busy_seconds()
    sampler = procinfo.PeakSampler(server_pids if sample_memory else [], interval=0.02)
    result, error = None, None
    started = time.perf_counter()
    try:
        with sampler:
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.flush()
            for line in process.stdout:
                if line.startswith("READY "):
                    if on_ready is not None:
                        on_ready(json.loads(line[6:]))
                    process.stdin.write("go\n")
                    process.stdin.flush()
                elif line.startswith("RESULT "):
                    result = json.loads(line[7:])
                elif line.startswith("ERROR "):
                    error = line[6:].strip()
    except BaseException:
        process.kill()  # interrupted: do not leave the load generator running
        raise
    finally:
        killer.cancel()
        _, wait_status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(wait_status)
        stderr_reader.join(timeout=5)
    elapsed = time.perf_counter() - started
    machine_cpu_s = procinfo.machine_busy_seconds() - machine0
    if result is None:
        if error is None and elapsed >= timeout:
            error = f"killed after {timeout:.0f} s"
        tail = "".join(stderr_lines[-15:])
        raise JobFailed(f"{job['kind']} job failed: {error or f'exit {process.returncode}'}\n{tail}".strip())
    result["loadgen_cpu_total_s"] = usage.ru_utime + usage.ru_stime
    result["loadgen_process_s"] = elapsed
    if "wall_s" in result and result["wall_s"] > 0:
        result["loadgen_cpu_pct"] = 100 * result["loadgen_cpu_s"] / result["wall_s"]
    result["server_cpu_s"] = procinfo.cpu_seconds(server_pids) - server_cpu0 if server_pids else 0.0
    # Everything else that ran meanwhile: a server's database and Redis, wrangler's proxy, other people's work.
    result["aux_cpu_s"] = procinfo.cpu_seconds(aux_pids) - aux_cpu0
    result["other_cpu_s"] = max(
        0.0, machine_cpu_s - result["loadgen_cpu_total_s"] - result["server_cpu_s"] - result["aux_cpu_s"]
    )
    result["machine_cpu_s"] = machine_cpu_s
    if server_pids and sample_memory:
        result["server_peak_rss"] = sampler.peak
    return result
