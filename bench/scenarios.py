"""The six benchmark scenarios. Each runs its load in a ``bench.loadgen`` process against a started server and
returns ``{"metrics": {key: number}, "details": {...}}``; ``METRICS`` says how to label and compare them."""

import time
import uuid
from dataclasses import dataclass, field

from bench import procinfo
from bench.runner import run_job


@dataclass
class Config:
    large: bool = False
    push_total: int = 5000
    push_batches: tuple = (1, 10, 100)
    pull_sizes: tuple = (10_000,)
    fanout_subscribers: tuple = (20,)
    fanout_pushes: int = 200
    many_stores: int = 50
    many_events: int = 20
    idle_sockets: tuple = (1000,)
    idle_sockets_per_store: int = 10
    scale_processes: tuple = (1, 2, 4)
    scale_push_batches: tuple = (1, 100)
    sustained_sockets: int = 1000
    sustained_stores: int = 200
    sustained_rates: tuple = (100, 200, 400, 800, 1600, 3200, 6400, 12_800)
    sustained_step_s: float = 5.0
    sustained_drain_s: float = 2.0
    sustained_limit_ms: float = 50.0
    sustained_min_share: float = 0.95
    job_timeout: float = 600.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @classmethod
    def make(cls, large=False, layers=False, smoke=False):
        config = cls(large=large)
        if large:
            config.pull_sizes = (10_000, 100_000)
            config.idle_sockets = (1000, 10_000)
        if large or layers:
            config.fanout_subscribers = (20, 200)
        if smoke:
            config.__dict__.update(SMOKE)
        return config

    def store(self, name):
        return f"bench-{self.run_id}-{name}-{uuid.uuid4().hex[:6]}"


# Every scenario at a size that only shows the bench runs (``--smoke``): its figures measure nothing.
SMOKE = {
    "push_total": 200,
    "pull_sizes": (1000,),
    "fanout_subscribers": (5,),
    "fanout_pushes": 20,
    "many_stores": 5,
    "many_events": 5,
    "idle_sockets": (50,),
    "scale_processes": (1, 2),
    "sustained_sockets": 20,
    "sustained_stores": 5,
    "sustained_rates": (20, 40),
    "sustained_step_s": 1.0,
}

# key -> (label, format, better): better is "higher", "lower" or None (informational, no ratio)
METRICS = {}


def metric(key, label, fmt, better):
    METRICS[key] = (label, fmt, better)
    return key


def aux(server):
    """The server's processes for ``run_job``: measured ones, then the helpers whose CPU is shown apart."""
    return {"server_pids": server.pids, "aux_pids": getattr(server, "aux_pids", [])}


def job(server, kind, **fields):
    """A load-generator job against ``server``, in the protocol its client speaks, for its load generator."""
    return {"kind": kind, "protocol": server.protocol, "generator": server.generator, **fields}


def subscriber_urls(server):
    """Where the subscribers of a pusher on the first process go: every other process, or the same one."""
    return server.urls[1:] or server.urls[:1]


def _loadgen(details, result):
    details["other_cpu_s"] = details.get("other_cpu_s", 0.0) + result.get("other_cpu_s", 0.0)
    details["server_cpu_s"] = details.get("server_cpu_s", 0.0) + result.get("server_cpu_s", 0.0)
    details["aux_cpu_s"] = details.get("aux_cpu_s", 0.0) + result.get("aux_cpu_s", 0.0)
    details.setdefault("loadgen", []).append(
        {
            "job_cpu_s": round(result.get("loadgen_cpu_s", 0), 3),
            "job_wall_s": round(result.get("wall_s", 0), 3),
            "cpu_pct_of_one_core": round(result.get("loadgen_cpu_pct", 0), 1),
            "process_cpu_s": round(result.get("loadgen_cpu_total_s", 0), 3),
        }
    )


def _loadgen_peak_pct(details):
    return max((entry["cpu_pct_of_one_core"] for entry in details.get("loadgen", [])), default=None)


def _cpu_rows(prefix, metrics, details):
    """Informational rows: the load generator's peak share of a core, the server's CPU, everyone else's."""
    metrics[metric(f"{prefix}_loadgen_pct", "load generator CPU, max (% of one core)", "{:.0f}%", None)] = (
        _loadgen_peak_pct(details)
    )
    metrics[metric(f"{prefix}_server_cpu", "server process CPU in the measured jobs (s)", "{:.1f}", None)] = (
        details.get("server_cpu_s")
    )
    metrics[metric(f"{prefix}_aux_cpu", "wrangler dev's node + proxy workerd CPU (s)", "{:.1f}", None)] = (
        details.get("aux_cpu_s") or None
    )
    metrics[metric(f"{prefix}_other_cpu", "other processes' CPU meanwhile (s)", "{:.1f}", None)] = details.get(
        "other_cpu_s"
    )


# -- 1. push throughput ------------------------------------------------------------------------------------


def push(server, config):
    """On N processes, the pushes must also reach a subscriber on every other process (through Redis)."""
    metrics, details = {}, {"runs": {}}
    for batch in config.push_batches:
        fields = {"store": config.store(f"push{batch}"), "total": config.push_total, "batch": batch}
        if len(server.urls) > 1:
            spec = job(server, "scale_push", pusher_url=server.url, sub_urls=subscriber_urls(server), **fields)
        else:
            spec = job(server, "push", url=server.url, **fields)
        result = run_job(spec, **aux(server), timeout=config.job_timeout)
        _loadgen(details, result)
        details["runs"][batch] = result
        metrics[metric(f"push_b{batch}_eps", f"batch {batch}: acknowledged events/s", "{:,.0f}", "higher")] = result[
            "events_per_s"
        ]
        metrics[metric(f"push_b{batch}_ack_p50", f"batch {batch}: ack p50 (ms)", "{:.1f}", "lower")] = result["ack_ms"][
            "p50"
        ]
        if batch == 1:
            pushes = config.push_total
            metrics[metric("push_b1_server_cpu_ms", "batch 1: server CPU per push (ms)", "{:.2f}", "lower")] = (
                1000 * result.get("server_cpu_s", 0.0) / pushes
            )
            metrics[
                metric(
                    "push_b1_total_cpu_ms",
                    "batch 1: server + database + Redis CPU per push (ms)",
                    "{:.2f}",
                    "lower",
                )
            ] = 1000 * (result.get("server_cpu_s", 0.0) + result.get("other_cpu_s", 0.0)) / pushes
        if "ok" in result:
            metrics[
                metric(f"push_b{batch}_ok", f"batch {batch}: every process got every event, in order", "{}", None)
            ] = result["ok"]
    _cpu_rows("push", metrics, details)
    return {"metrics": metrics, "details": details}


# -- 2. cold pull ------------------------------------------------------------------------------------------


def pull(server, config):
    metrics, details = {}, {"runs": {}}
    for size in config.pull_sizes:
        store = config.store(f"pull{size}")
        seed = run_job(
            job(server, "push", url=server.url, store=store, total=size, batch=100),
            **aux(server),
            timeout=config.job_timeout,
        )
        time.sleep(0.5)
        baseline = procinfo.rss(server.pids)
        exact_peak = procinfo.reset_peak(server.pids) and bool(server.pids)
        result = run_job(
            job(server, "pull", url=server.url, store=store, expected=size),
            **aux(server),
            timeout=config.job_timeout,
        )
        peak = max(procinfo.hwm(server.pids) if exact_peak else 0, result.get("server_peak_rss", 0))
        result.update(seed_s=seed["wall_s"], rss_before=baseline, peak_rss=peak, peak_is_vmhwm=exact_peak)
        _loadgen(details, result)
        details["runs"][size] = result
        n = f"{size:,}"
        metrics[metric(f"pull_{size}_s", f"{n}: pull request to last page (s)", "{:.3f}", "lower")] = result["pull_s"]
        metrics[metric(f"pull_{size}_eps", f"{n}: events/s", "{:,.0f}", "higher")] = result["events_per_s"]
        metrics[metric(f"pull_{size}_connect_s", f"{n}: connect (s)", "{:.3f}", "lower")] = result["connect_s"]
        if server.pids:
            metrics[metric(f"pull_{size}_peak_mb", f"{n}: server peak RSS (MB)", "{:.1f}", "lower")] = peak / 2**20
            metrics[metric(f"pull_{size}_delta_mb", f"{n}: peak RSS over before-pull (MB)", "{:.1f}", "lower")] = (
                max(0, peak - baseline) / 2**20
            )
    _cpu_rows("pull", metrics, details)
    return {"metrics": metrics, "details": details}


# -- 3. fan-out latency ------------------------------------------------------------------------------------


def fanout(server, config):
    metrics, details = {}, {"runs": {}}
    for subscribers in config.fanout_subscribers:
        result = run_job(
            job(
                server,
                "fanout",
                url=server.url,
                sub_urls=subscriber_urls(server),
                store=config.store(f"fan{subscribers}"),
                subscribers=subscribers,
                pushes=config.fanout_pushes,
            ),
            **aux(server),
            timeout=config.job_timeout,
        )
        _loadgen(details, result)
        details["runs"][subscribers] = result
        for p in ("p50", "p95", "p99"):
            metrics[
                metric(f"fan_{subscribers}_{p}", f"{subscribers} subscribers: latency {p} (ms)", "{:.1f}", "lower")
            ] = result["latency_ms"][p]
        metrics[
            metric(f"fan_{subscribers}_missing", f"{subscribers} subscribers: receipts missing", "{:,.0f}", None)
        ] = result["missing"]
    _cpu_rows("fan", metrics, details)
    return {"metrics": metrics, "details": details}


# -- 4. many stores ----------------------------------------------------------------------------------------


def many(server, config, urls=None):
    prefix = config.store("many")
    result = run_job(
        job(
            server,
            "many",
            urls=urls or server.urls,
            stores=config.many_stores,
            events=config.many_events,
            prefix=prefix,
        ),
        **aux(server),
        timeout=config.job_timeout,
    )
    details = {"run": result, "prefix": prefix}
    _loadgen(details, result)
    label = f"{config.many_stores} stores x {config.many_events} events"
    metrics = {
        metric("many_total_s", f"{label}: total time (s)", "{:.2f}", "lower"): result["wall_s"],
        metric("many_eps", f"{label}: events/s", "{:,.0f}", "higher"): result["events_per_s"],
        metric("many_connect_s", "slowest connect (s)", "{:.2f}", "lower"): result["connect_max_s"],
    }
    _cpu_rows("many", metrics, details)
    return {"metrics": metrics, "details": details}


# -- 5. idle connections -----------------------------------------------------------------------------------


def idle(server, config):
    metrics, details = {}, {"runs": {}}
    proxy_pids = getattr(server, "proxy_pids", [])
    for n in config.idle_sockets:
        prefix = config.store(f"idle{n}")
        # open and close a few sockets first, so one-off allocations do not count per socket
        run_job(
            job(server, "idle", url=server.url, n=50, stores=5, prefix=prefix + "-warm"),
            **aux(server),
            timeout=config.job_timeout,
        )
        time.sleep(1.0)
        baseline, proxy_baseline = procinfo.rss(server.pids), procinfo.rss(proxy_pids)
        measured = {}

        def on_ready(info, measured=measured):
            time.sleep(2.0)  # let the server settle
            measured.update(info, rss=procinfo.rss(server.pids), proxy_rss=procinfo.rss(proxy_pids))

        result = run_job(
            job(
                server,
                "idle",
                url=server.url,
                n=n,
                stores=max(1, n // config.idle_sockets_per_store),
                prefix=prefix,
            ),
            **aux(server),
            on_ready=on_ready,
            timeout=config.job_timeout,
        )
        time.sleep(1.0)
        result.update(rss_before=baseline, rss_open=measured.get("rss"), rss_after_close=procinfo.rss(server.pids))
        if proxy_pids:
            result.update(proxy_rss_before=proxy_baseline, proxy_rss_open=measured.get("proxy_rss"))
        _loadgen(details, result)
        details["runs"][n] = result
        # the sockets still open after the measurement (a server that dropped some is not measured per socket)
        opened = result["still_open"]
        metrics[
            metric(f"idle_{n}_open", f"{n:,}: sockets open at once (still open after measuring)", "{:,.0f}", "higher")
        ] = opened
        metrics[metric(f"idle_{n}_open_s", f"{n:,}: time to open them (s)", "{:.2f}", "lower")] = measured.get("open_s")
        if opened < n:
            details.setdefault("notes", []).append(
                f"{n:,} sockets: {result['open']:,} opened ({result['n_failures']:,} failed: "
                f"{(result['failures'] or ['-'])[0]}), {opened:,} still open after measuring"
                + (f"; {server.note_on_failures}" if getattr(server, "note_on_failures", None) else "")
            )
        if server.pids and opened and opened == result["open"]:
            per_socket = (measured["rss"] - baseline) / opened
            metrics[metric(f"idle_{n}_kb", f"{n:,}: server memory per idle socket (KB)", "{:.1f}", "lower")] = (
                per_socket / 1024
            )
            metrics[metric(f"idle_{n}_rss_mb", f"{n:,}: server RSS with them open (MB)", "{:.0f}", "lower")] = (
                measured["rss"] / 2**20
            )
            if proxy_pids and measured.get("proxy_rss") is not None:
                metrics[
                    metric(f"idle_{n}_proxy_kb", f"{n:,}: wrangler-dev proxy memory per socket (KB)", "{:.1f}", None)
                ] = (measured["proxy_rss"] - proxy_baseline) / opened / 1024
    _cpu_rows("idle", metrics, details)
    return {"metrics": metrics, "details": details}


# -- 6. scale-out ------------------------------------------------------------------------------------------


def scaleout_one(server, config):
    """Scenario 1 and 4 on ``server`` (N daphne processes on PostgreSQL + Redis), clients round-robin."""
    processes = len(server.urls)
    metrics, details = {}, {"runs": {}}
    urls = server.urls
    for batch in config.scale_push_batches:
        # The pusher on the first process; a subscriber on every other one (on the same one when alone) must
        # receive every event once and in order.
        result = run_job(
            job(
                server,
                "scale_push",
                pusher_url=urls[0],
                sub_urls=subscriber_urls(server),
                store=config.store(f"scale{processes}-b{batch}"),
                total=config.push_total,
                batch=batch,
            ),
            **aux(server),
            timeout=config.job_timeout,
        )
        _loadgen(details, result)
        details["runs"][f"push_b{batch}"] = result
        metrics[f"push_b{batch}_eps"] = result["events_per_s"]
        metrics[f"push_b{batch}_ok"] = result["ok"]
    result = many(server, config)
    prefix = result["details"]["prefix"]
    details["runs"]["many"] = result["details"]["run"]
    _loadgen(details, result["details"]["run"])
    metrics["many_total_s"] = result["metrics"]["many_total_s"]
    metrics["many_eps"] = result["metrics"]["many_eps"]
    metrics["many_loadgen_pct"] = result["metrics"]["many_loadgen_pct"]
    verify = run_job(
        job(
            server,
            "verify_counts",
            urls=urls,
            stores=config.many_stores,
            prefix=prefix,
            expected=config.many_events,
        ),
        timeout=config.job_timeout,
    )
    details["runs"]["verify"] = verify
    metrics["many_ok"] = verify["ok"]
    metrics["correct"] = verify["ok"] and all(metrics[f"push_b{b}_ok"] for b in config.scale_push_batches)
    metrics["loadgen_pct"] = _loadgen_peak_pct(details)
    return {"metrics": metrics, "details": details}


SCENARIOS = {
    "push": ("1. Push throughput", push),
    "pull": ("2. Cold pull", pull),
    "fanout": ("3. Fan-out latency", fanout),
    "many": ("4. Many stores", many),
    "idle": ("5. Idle connections", idle),
}

DESCRIPTIONS = {
    "push": "one client pushes {push_total:,} events, each push waiting for its acknowledgement (on N processes: "
    "from the first, and a subscriber on every other process must get every event once, in order)",
    "pull": "a fresh socket pulls a backlog of {pull_sizes_text} events (seeded first, not timed)",
    "fanout": "{fanout_subscribers_text} subscriber sockets on one store; a pusher sends {fanout_pushes} "
    "single-event pushes one after another; push sent -> broadcast received, over all subscribers (on N "
    "processes: the pusher on the first, the subscribers round-robin on the others)",
    "many": "{many_stores} clients at once, each pushing {many_events} single-event pushes to its own store "
    "(connects included; on N processes round-robin)",
    "idle": "{idle_sockets_text} sockets connected as the client connects (pull + ping), {idle_sockets_per_store} "
    "per store, then idle; server RSS growth / sockets",
    "scaleout": "livesync only, N daphne processes on one PostgreSQL database + Redis, clients round-robin: "
    "scenario 1 (pusher on process 1, a subscriber on every other process checking it gets every event "
    "in order) and scenario 4 (then each store pulled through another process and checked)",
}


def describe(name, config):
    values = dict(config.__dict__)
    values["pull_sizes_text"] = " and ".join(f"{n:,}" for n in config.pull_sizes)
    values["fanout_subscribers_text"] = " and ".join(str(n) for n in config.fanout_subscribers)
    values["idle_sockets_text"] = " and ".join(f"{n:,}" for n in config.idle_sockets)
    return DESCRIPTIONS[name].format(**values)
