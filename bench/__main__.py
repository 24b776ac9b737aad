"""Benchmarks for any server speaking LiveStore's ``@livestore/sync-cf@0.3.1`` WebSocket protocol.

    python -m bench                       # livesync on the embedded default (started here)
    python -m bench --url ws://HOST:PORT  # any 0.3 server already running (memory only with --server-pid)
    python -m bench --compare             # livesync (SQLite; PostgreSQL + Redis) and the reference, alternating
    python -m bench --large               # also 100,000-event pulls, 200 subscribers, 10,000 idle sockets

Scenarios: 1 push throughput, 2 cold pull, 3 fan-out latency, 4 many stores, 5 idle connections,
6 scale-out (1, 2 and 4 daphne processes on PostgreSQL + Redis; not with --url). The load runs in its own
process (``bench.loadgen``) on raw sockets with the real client's frames (``python -m bench.verify_frames``
checks them); each table says how much CPU it used. Prints one table per scenario and writes all results
as JSON (``--json``, default ``bench/results.json``).
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import report, scenarios
from bench.runner import JobFailed, run_job
from bench.servers import (
    REFERENCE_DIR,
    REPO_ROOT,
    ExternalServer,
    LivesyncServer,
    ReferenceServer,
    Unavailable,
    reference_problem,
)

ALL_SCENARIOS = ["push", "pull", "fanout", "many", "idle", "scaleout"]


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="benchmark the 0.3 server at this ws:// URL instead of starting livesync")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's pid, for its memory and CPU")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="livesync-sqlite, livesync-postgres (+ Redis) and the reference, alternating",
    )
    parser.add_argument("--large", action="store_true", help="add the large sizes (100,000 / 200 / 10,000)")
    parser.add_argument("--json", default=str(REPO_ROOT / "bench" / "results.json"), help="where to write results")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(ALL_SCENARIOS)}")
    parser.add_argument("--no-reference", action="store_true", help="with --compare: leave the reference out")
    args = parser.parse_args(argv)
    if args.url and args.compare:
        parser.error("--url and --compare exclude each other")
    args.scenarios = ALL_SCENARIOS if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def tool_version(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def environment():
    wrangler_bin = REFERENCE_DIR / "node_modules" / ".bin"
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "node": tool_version(["node", "--version"]) if shutil.which("node") else None,
        "wrangler": tool_version([str(wrangler_bin / "wrangler"), "--version"])
        if (wrangler_bin / "wrangler").exists()
        else None,
        "workerd": tool_version([str(wrangler_bin / "workerd"), "--version"])
        if (wrangler_bin / "workerd").exists()
        else None,
    }


def make_targets(args, workdir):
    if args.url:
        return [ExternalServer(args.url, args.server_pid)]
    targets = [LivesyncServer("sqlite", workdir=workdir)]
    if args.compare:
        targets.append(LivesyncServer("postgres", workdir=workdir))
        if not args.no_reference:
            targets.append(ReferenceServer(workdir=workdir))
    return targets


def warm_up(server, config):
    run_job({"kind": "warmup", "urls": server.urls, "store": config.store("warmup")}, timeout=120)


def run_scenario(name, target, config, unavailable):
    """One scenario against one target on a fresh server (fresh database); returns its result entry."""
    if target.name in unavailable:
        return {"unavailable": unavailable[target.name]}
    _, function = scenarios.SCENARIOS[name]
    started = time.monotonic()
    try:
        with target as server:
            warm_up(server, config)
            entry = function(server, config)
    except Unavailable as error:
        unavailable[target.name] = str(error).splitlines()[0]
        log(f"{name}: {target.name} unavailable: {error}")
        return {"unavailable": unavailable[target.name], "detail": str(error)}
    except (JobFailed, RuntimeError, OSError) as error:
        log(f"{name}: {target.name} FAILED: {error}")
        return {"error": str(error)}
    log(f"{name}: {target.name} done in {time.monotonic() - started:.0f} s")
    return entry


def run_scaleout(config, workdir):
    probe = LivesyncServer("postgres", workdir=workdir)
    problem = probe.problem()
    if problem:
        return {"unavailable": problem}
    results = {}
    for processes in config.scale_processes:
        started = time.monotonic()
        try:
            with LivesyncServer(
                "postgres", processes=processes, workdir=workdir, name=f"livesync-postgres-x{processes}"
            ) as server:
                warm_up(server, config)
                results[processes] = scenarios.scaleout_one(server, config)
        except (JobFailed, RuntimeError, OSError) as error:
            log(f"scaleout: {processes} processes FAILED: {error}")
            results[processes] = {"error": str(error)}
            continue
        log(f"scaleout: {processes} processes done in {time.monotonic() - started:.0f} s")
    return results


def main(argv=None):
    args = parse_args(argv)
    config = scenarios.Config.make(large=args.large)
    env = environment()
    started = time.monotonic()
    results, scaleout, unavailable = {}, None, {}
    with tempfile.TemporaryDirectory(prefix="livesync-bench-") as workdir:
        targets = make_targets(args, workdir)
        if args.compare and not args.no_reference and reference_problem():
            unavailable["reference"] = reference_problem()
        for name in args.scenarios:
            if name == "scaleout":
                continue
            results[name] = {}
            for target in targets:
                log(f"{name}: {target.name} ...")
                results[name][target.name] = run_scenario(name, target, config, unavailable)
        if "scaleout" in args.scenarios:
            if args.url:
                scaleout = {"unavailable": "scale-out starts its own daphne processes; not run with --url"}
            else:
                log("scaleout ...")
                scaleout = run_scaleout(config, workdir)
    elapsed = time.monotonic() - started
    env["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]

    out = []
    out.append(
        f"# livesync bench - {env['date']} - {env['cpus']} CPUs, {env['memory_gb']} GB - "
        f"python {env['python']}, node {env['node']}, wrangler {env['wrangler']}, workerd {env['workerd']}"
    )
    if any(name != "scaleout" for name in args.scenarios):
        out.append("servers: " + "; ".join(f"{t.name} = {t.description}" for t in targets))
    out.append(
        "load generator: its own process, raw WebSocket frames identical to the 0.3.1 client's "
        "(bench.verify_frames); 'load generator CPU' = its CPU time / wall time of the measured part. "
        "Ratios are livesync/reference of each metric. Server memory and CPU: /proc of the server process "
        "(reference: the workerd running the worker, Durable Objects and D1; wrangler dev's node processes "
        "and proxy workerd are shown apart). 'Other processes' CPU' is the rest of the machine's busy time "
        "during the measured jobs: PostgreSQL and Redis, and anything else running on the machine."
    )
    for name in args.scenarios:
        if name == "scaleout":
            out.append(report.scaleout_table("6. Scale-out", scenarios.describe("scaleout", config), scaleout, config))
        else:
            title, _ = scenarios.SCENARIOS[name]
            out.append(report.scenario_table(title, scenarios.describe(name, config), results[name]))
    checks = report.check_targets(results, scaleout, config)
    out.append(report.targets_table(checks))
    out.append(
        f"total time: {elapsed:.0f} s; load average at start {' '.join(env['loadavg_at_start'])}, "
        f"at end {' '.join(env['loadavg_at_end'])} (other work on the machine skews every number)"
    )
    text = "\n\n".join(out)
    print(text, flush=True)

    document = {
        "environment": env,
        "arguments": {"url": args.url, "compare": args.compare, "large": args.large, "scenarios": args.scenarios},
        "config": {k: v for k, v in config.__dict__.items()},
        "servers": {t.name: t.description for t in targets},
        "results": results,
        "scaleout": {str(k): v for k, v in (scaleout or {}).items()},
        "targets": [dict(zip(("target", "server", "verdict", "measured"), c, strict=True)) for c in checks],
        "metrics": {k: {"label": v[0], "better": v[2]} for k, v in scenarios.METRICS.items()},
        "table": text,
        "elapsed_s": elapsed,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    log(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
