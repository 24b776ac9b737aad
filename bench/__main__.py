"""Benchmarks for any server speaking LiveStore's sync protocol: ``@livestore/sync-cf@0.3.1`` and 0.4.0's ws.

    python -m bench                       # livesync on the embedded default (started here), 0.3 and 0.4 ws clients
    python -m bench --url ws://HOST:PORT  # any server already running (memory only with --server-pid)
    python -m bench --compare             # livesync (SQLite; PostgreSQL + Redis) and the 0.3.1 reference, alternating
    python -m bench --large               # also 100,000-event pulls, 200 subscribers, 10,000 idle sockets
    python -m bench --layers              # livesync on Redis's two channel layers, 1 and 2 processes
    python -m bench --ceilings            # also the machine's limits: daphne echo, PostgreSQL and SQLite commits
    python -m bench --stores              # also 1,000 and 10,000 new stores (--large: 100,000) on both backends
    python -m bench --client python,node  # every server driven by both load generators (default: python)
    python -m bench --smoke               # every scenario at a tiny size: checks the bench runs, measures nothing

Scenarios: 1 push throughput, 2 cold pull, 3 fan-out latency, 4 many stores, 5 idle connections,
6 scale-out (1, 2 and 4 daphne processes on PostgreSQL + Redis; not with --url), 7 sustained load. Each
livesync server runs once per client protocol (``--protocols``): ratios 0.4/0.3 compare the two clients on the
same server; and once per load generator (``--client``). The load runs in its own process: ``bench.loadgen``
on raw sockets, or ``bench/node/loadgen.mjs`` on Node's ``ws`` as the real clients use it, both with the real
clients' frames (``python -m bench.verify_frames``, ``bench.verify_frames04`` and ``bench.verify_node_frames``
check them); each table says how much CPU it used. Prints one table per scenario and writes all results as
JSON (``--json``, default ``bench/results.json``).
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
from datetime import UTC, datetime
from pathlib import Path

from bench import ceilings, report, scenarios, stores, sustained
from bench.clients import CLIENTS
from bench.runner import JobFailed, run_job
from bench.servers import (
    LAYERS,
    REFERENCE_DIR,
    REPO_ROOT,
    ExternalServer,
    LivesyncServer,
    ReferenceServer,
    Unavailable,
    generator_suffix,
    postgres_and_redis_problem,
    reference_problem,
)

ALL_SCENARIOS = ["push", "pull", "fanout", "many", "idle", "sustained", "scaleout"]
SCENARIOS = {**scenarios.SCENARIOS, "sustained": (sustained.TITLE, sustained.run)}
GENERATORS = ["python", "node"]
# What a channel layer changes: the broadcast path (and, on 2 processes, the trip through Redis).
LAYER_SCENARIOS = ["push", "fanout", "many"]
LAYER_PROCESSES = (1, 2)


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="benchmark the server at this ws:// URL instead of starting livesync")
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
    parser.add_argument(
        "--protocols",
        default=",".join(CLIENTS),
        help=f"comma-separated client protocols to run every livesync server with (default {','.join(CLIENTS)})",
    )
    parser.add_argument(
        "--layers",
        action="store_true",
        help=f"livesync on PostgreSQL with 1 and 2 processes on each Redis channel layer ({', '.join(LAYERS)}), "
        f"0.3 client, scenarios {','.join(LAYER_SCENARIOS)} with 20 and 200 subscribers",
    )
    parser.add_argument(
        "--ceilings",
        action="store_true",
        help="also measure the machine's limits (a bare Channels echo under daphne, PostgreSQL and SQLite commit "
        "rates) and show livesync's batch-1 push as a share of them",
    )
    parser.add_argument(
        "--stores",
        action="store_true",
        help="also create 1,000 and 10,000 new stores (with --large also 100,000) on SQLite and on PostgreSQL + "
        "Redis: ms per new store in each tenth of the run, server RSS, database size per store",
    )
    parser.add_argument(
        "--stores-only",
        action="store_true",
        help="run the --stores measurement and nothing else",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="the cost of livesync's Prometheus metrics: the push scenario on SQLite and on PostgreSQL + Redis, "
        "each with LIVESYNC['METRICS'] on and off, alternating (use --rounds 3 or more)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run each scenario N times, in alternating order; tables show medians"
    )
    parser.add_argument(
        "--client",
        default="python",
        help=f"comma-separated load generators to drive every server with: {', '.join(GENERATORS)} (default python)",
    )
    parser.add_argument(
        "--sustained-size",
        metavar="SOCKETS/STORES",
        help="scenario 7's sockets and stores (default 1000/200; at least 2 sockets per store)",
    )
    parser.add_argument(
        "--sustained-rates", metavar="R1,R2,…", help="scenario 7's steps, total events/s (default 100,200,…,12800)"
    )
    parser.add_argument("--sustained-step", type=float, metavar="S", help="scenario 7's seconds per step (default 5)")
    parser.add_argument(
        "--smoke", action="store_true", help="every scenario at a tiny size: checks the bench runs, measures nothing"
    )
    args = parser.parse_args(argv)
    if args.url and args.compare:
        parser.error("--url and --compare exclude each other")
    if args.layers and (args.url or args.compare):
        parser.error("--layers starts its own servers; it excludes --url and --compare")
    if args.metrics and (args.url or args.compare or args.layers):
        parser.error("--metrics starts its own servers; it excludes --url, --compare and --layers")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.client != "python" and (args.layers or args.metrics):
        parser.error("--layers and --metrics run with the Python load generator only")
    if args.stores_only:
        args.stores, args.only = True, None
    args.protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not args.protocols or set(args.protocols) - set(CLIENTS):
        parser.error(f"--protocols: choose from {', '.join(CLIENTS)}")
    args.clients = [c.strip() for c in args.client.split(",") if c.strip()]
    if not args.clients or set(args.clients) - set(GENERATORS):
        parser.error(f"--client: choose from {', '.join(GENERATORS)}")
    try:
        args.sustained_fields = sustained_overrides(args)
    except ValueError as error:
        parser.error(str(error))
    default = LAYER_SCENARIOS if args.layers else ALL_SCENARIOS
    args.scenarios = default if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    if args.metrics and not args.only:
        args.scenarios = ["push"]
    if args.stores_only:
        args.scenarios = []
    unknown = set(args.scenarios) - set(default)
    if unknown:
        parser.error(f"unknown scenarios{' for --layers' if args.layers else ''}: {', '.join(sorted(unknown))}")
    return args


def sustained_overrides(args):
    """Scenario 7's sizes given on the command line, as ``Config`` fields."""
    fields = {}
    if args.sustained_size:
        sockets, _, stores = args.sustained_size.partition("/")
        fields.update(sustained_sockets=int(sockets), sustained_stores=int(stores))
        if fields["sustained_sockets"] < 2 * fields["sustained_stores"] or fields["sustained_stores"] < 1:
            raise ValueError("--sustained-size: at least 2 sockets per store, so that each push has someone to reach")
    if args.sustained_rates:
        fields["sustained_rates"] = tuple(int(rate) for rate in args.sustained_rates.split(","))
    if args.sustained_step:
        fields["sustained_step_s"] = args.sustained_step
    return fields


def describe(name, config):
    return sustained.describe(config) if name == "sustained" else scenarios.describe(name, config)


def tool_version(command):
    try:
        return (
            subprocess.run(command, check=False, capture_output=True, text=True, timeout=20)
            .stdout.strip()
            .splitlines()[-1]
        )
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def environment():
    wrangler_bin = REFERENCE_DIR / "node_modules" / ".bin"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
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
    """The servers in the order they run, and the ratio columns: ``[(label, target, baseline)]``."""
    if args.layers:
        targets, ratios = [], []
        for processes in LAYER_PROCESSES:
            names = {layer: f"{layer}-x{processes}" for layer in LAYERS}
            targets += [
                LivesyncServer("postgres", processes=processes, workdir=workdir, name=name, layer=layer)
                for layer, name in names.items()
            ]
            ratios.append((f"pubsub/core x{processes}", names["pubsub"], names["core"]))
        return targets, ratios

    if args.metrics:
        targets, ratios = [], []
        for kind in ("sqlite", "postgres"):
            on, off = f"livesync-{kind}-metrics", f"livesync-{kind}-no-metrics"
            targets += [
                LivesyncServer(kind, workdir=workdir, name=on),
                LivesyncServer(kind, workdir=workdir, name=off, extra_settings={"LIVESYNC_METRICS": "false"}),
            ]
            ratios.append((f"{kind} metrics/none", on, off))
        return targets, ratios

    def make(kind, protocol, generator):
        if args.url:
            return ExternalServer(args.url, args.server_pid, protocol=protocol, generator=generator)
        return LivesyncServer(kind, workdir=workdir, protocol=protocol, generator=generator)

    kinds = ["server"] if args.url else ["sqlite", "postgres"] if args.compare else ["sqlite"]
    targets, ratios = [], []
    for generator in args.clients:
        suffix = generator_suffix(generator)
        mine = []
        for kind in kinds:
            made = {protocol: make(kind, protocol, generator) for protocol in args.protocols}
            mine += made.values()
            # each other client against the 0.3 client on the same kind of server
            ratios += [
                (f"{kind}{suffix} {protocol.split('-')[0]}/0.3", server.name, made["0.3"].name)
                for protocol, server in made.items()
                if protocol != "0.3" and "0.3" in made
            ]
        if args.compare and not args.no_reference:
            reference = ReferenceServer(workdir=workdir, generator=generator)
            ratios += [
                (f"{t.name.removeprefix('livesync-')}/ref{suffix}", t.name, reference.name)
                for t in mine
                if t.protocol == "0.3"
            ]
            mine.append(reference)
            if "sustained" in args.scenarios and not args.url:
                # What a second process adds to a deployment's steady load (scenario 6 measures bursts).
                pair = LivesyncServer(
                    "postgres", processes=2, workdir=workdir, name=f"livesync-postgres-x2{suffix}", generator=generator
                )
                pair.scenarios = ("sustained",)
                mine.insert(-1, pair)
                ratios.append((f"postgres-x2/ref{suffix}", pair.name, reference.name))
        targets += mine
    # where both generators ran: each 0.3 server as the Node generator saw it against the Python one
    by_name = {t.name: t for t in targets}
    ratios += [
        (f"{t.name.removeprefix('livesync-').removesuffix('-node')} node/py", t.name, python_name)
        for t in targets
        if t.generator == "node" and t.protocol == "0.3" and (python_name := t.name.removesuffix("-node")) in by_name
    ]
    return targets, ratios


def warm_up(server, config):
    run_job(scenarios.job(server, "warmup", urls=server.urls, store=config.store("warmup")), timeout=120)


def run_scenario(name, target, config, unavailable):
    """One scenario against one target on a fresh server (fresh database); returns its result entry."""
    if target.name in unavailable:
        return {"unavailable": unavailable[target.name]}
    _, function = SCENARIOS[name]
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


def measure_metrics_cost():
    log("metrics cost ...")
    completed = subprocess.run(
        [sys.executable, "-m", "bench.metrics_cost"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout)["microseconds_per_push"]


def main(argv=None):
    args = parse_args(argv)
    config = scenarios.Config.make(large=args.large, layers=args.layers, smoke=args.smoke)
    config.__dict__.update(args.sustained_fields)
    env = environment()
    started = time.monotonic()
    results, scaleout, unavailable, limits, store_counts, metrics_cost = {}, None, {}, None, None, None
    first_pushes = None
    with tempfile.TemporaryDirectory(prefix="livesync-bench-") as workdir:
        targets, ratios = make_targets(args, workdir)
        if args.ceilings:
            log("ceilings ...")
            limits = ceilings.measure(workdir, postgres_problem=postgres_and_redis_problem())
        if args.metrics:
            metrics_cost = measure_metrics_cost()
        if args.stores:
            store_counts = stores.measure(
                workdir, large=args.large, postgres_problem=postgres_and_redis_problem(), log=log
            )
            first_pushes = stores.measure_first_pushes(workdir, postgres_problem=postgres_and_redis_problem(), log=log)
        if args.compare and not args.no_reference and reference_problem():
            unavailable.update({t.name: reference_problem() for t in targets if isinstance(t, ReferenceServer)})
        for name in args.scenarios:
            if name == "scaleout":
                continue
            running = [target for target in targets if target.scenarios is None or name in target.scenarios]
            rounds = {target.name: [] for target in running}
            for number in range(args.rounds):
                # every other round backwards (A B, B A, …): slow drift of the machine's load hits all alike
                for target in running if number % 2 == 0 else running[::-1]:
                    log(f"{name}: {target.name} (round {number + 1} of {args.rounds}) ...")
                    rounds[target.name].append(run_scenario(name, target, config, unavailable))
            results[name] = {target: report.median_of_rounds(entries) for target, entries in rounds.items()}
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
        "load generator: its own process, with frames identical to the real clients' (0.3.1: "
        "bench.verify_frames; 0.4.0 ws: bench.verify_frames04; Node's: bench.verify_node_frames): Python's on raw "
        "sockets without compression, or (servers named -node) Node's on ws with the real clients' defaults; "
        "'load generator CPU' = its CPU time / wall time of the measured part. Ratio columns divide each metric "
        "of one server by another's: x/ref = livesync / the reference, 0.4/0.3 = the 0.4 ws client / the 0.3 "
        "client on the same kind of server, node/py = the Node generator / the Python one on the same kind of "
        "server, pubsub/core = RedisPubSubChannelLayer / RedisChannelLayer. Server memory and CPU: /proc of the "
        "server process (reference: the workerd running the worker, Durable Objects and D1; wrangler dev's node "
        "processes and proxy workerd are shown apart). 'Other processes' CPU' is the rest of the machine's busy time "
        "during the measured jobs: PostgreSQL and Redis, and anything else running on the machine."
        + (f" Every number is the median of {args.rounds} rounds." if args.rounds > 1 else "")
    )
    for name in args.scenarios:
        if name == "scaleout":
            out.append(report.scaleout_table("6. Scale-out", describe("scaleout", config), scaleout, config))
        else:
            title, _ = SCENARIOS[name]
            out.append(report.scenario_table(title, describe(name, config), results[name], ratios))
    # The targets are livesync against the 0.3.1 reference, with the client of that protocol.
    if limits is not None:
        out.append(report.ceilings_table(limits, results.get("push", {}), targets))
    if store_counts is not None:
        out.append(report.stores_table(store_counts))
        out.append(report.first_push_table(first_pushes))
    if metrics_cost is not None:
        out.append(
            f"## What the metrics cost one push\nthe calls a batch-1 push makes into prometheus-client, timed alone "
            f"(bench/metrics_cost.py): {metrics_cost:.1f} µs per push; set against the server CPU per push above"
        )
    checks = []
    for generator in args.clients if args.scenarios and not args.layers and not args.metrics else []:
        checked = [
            t.name
            for t in targets
            if t.protocol == "0.3" and t.generator == generator and not isinstance(t, ReferenceServer)
        ]
        if checked:
            reference = report.REFERENCE + generator_suffix(generator)
            checks += report.check_targets(
                results, scaleout if generator == "python" else None, config, checked, reference_name=reference
            )
    if checks:
        out.append(report.targets_table(checks))
    out.append(
        f"total time: {elapsed:.0f} s; load average at start {' '.join(env['loadavg_at_start'])}, "
        f"at end {' '.join(env['loadavg_at_end'])} (other work on the machine skews every number)"
    )
    text = "\n\n".join(out)
    print(text, flush=True)

    document = {
        "environment": env,
        "arguments": {
            "url": args.url,
            "compare": args.compare,
            "large": args.large,
            "layers": args.layers,
            "metrics": args.metrics,
            "ceilings": args.ceilings,
            "stores": args.stores,
            "protocols": args.protocols,
            "rounds": args.rounds,
            "clients": args.clients,
            "scenarios": args.scenarios,
        },
        "config": dict(config.__dict__),
        "servers": {t.name: t.description for t in targets},
        "ratios": ratios,
        "results": results,
        "ceilings": limits,
        "stores": {backend: {str(k): v for k, v in runs.items()} for backend, runs in (store_counts or {}).items()},
        "first_pushes": first_pushes,
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
