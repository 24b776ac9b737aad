"""Scenario 7, sustained load (parent side): many clients on many stores, all the time, at a stepped rate.

The load generator's ``sustained`` job (``bench.sustained_load``, ``bench/node/sustained.mjs``) opens the
sockets and runs the ramp; after the sockets are open and after each step it stops for the parent, which reads
the CPU every process serving the load used in between: the server's own (daphne or the reference's workerd),
PostgreSQL's (the backends of the server's own database, plus the WAL writer, checkpointer and background
writer that the machine's other databases share), Redis's (the whole ``redis-server``, shared too) and
wrangler dev's helpers (shown apart). Per acknowledged event, these say what one more event costs a deployment.
The highest step that holds (p99 delivery under the limit, nearly every offered event acknowledged, none lost)
is the rate the server sustains.
"""

import itertools
from urllib.parse import urlsplit

from bench import procinfo
from bench.runner import run_job
from bench.scenarios import aux, job, metric

TITLE = "7. Sustained load"
# PostgreSQL's processes that serve every database (their titles name no database).
POSTGRES_SHARED = ("walwriter", "checkpointer", "background writer")


def describe(config):
    rates = ", ".join(f"{rate:,}" for rate in config.sustained_rates)
    return (
        f"{config.sustained_sockets:,} sockets over {config.sustained_stores:,} stores (on N processes a store's "
        f"sockets take them in turn), each a live subscriber of its store and pushing single events at an even "
        f"share of a total rate; the rate steps through {rates} events/s, {config.sustained_step_s:g} s each, and "
        f"stops after the first step that does not hold (p99 delivery < {config.sustained_limit_ms:g} ms, at "
        f"least {config.sustained_min_share:.0%} of the offered events acknowledged, none lost). A store's pushes "
        f"go one at a time. Delivery: push sent -> the event at each other socket of its store. CPU per "
        f"acknowledged event; PostgreSQL: its backends for the server's database + WAL writer, checkpointer, "
        f"background writer; Redis: the whole redis-server (shared with anything else on the machine)"
    )


def _process_groups(server):
    """``{group: () -> pids}``: the processes whose CPU is attributed to the load, found anew at each sample
    (PostgreSQL starts a backend per new connection)."""
    groups = {"server": lambda: server.pids, "aux": lambda: getattr(server, "aux_pids", [])}
    if getattr(server, "backend", None) == "postgres":
        database = urlsplit(server.database_url).path.lstrip("/")

        def postgres():
            return [
                pid
                for pid in procinfo.pids_named("postgres")
                if database in (title := procinfo.cmdline(pid)) or title.endswith(POSTGRES_SHARED)
            ]

        groups["postgres"] = postgres
        groups["redis"] = lambda: procinfo.pids_named("redis-server")
    return groups


def _sample(groups):
    sample = {name: {pid: procinfo.cpu_seconds([pid]) for pid in pids()} for name, pids in groups.items()}
    sample["machine"] = {0: procinfo.machine_busy_seconds()}
    return sample


def _used(before, after):
    """CPU seconds each group used between two samples; a process that started in between counts whole."""
    return {name: sum(cpu - before[name].get(pid, 0.0) for pid, cpu in pids.items()) for name, pids in after.items()}


def _per_event_ms(step, group):
    acked = step["events_acked"]
    return 1000 * step["cpu_s"][group] / acked if acked and group in step["cpu_s"] else None


def _total_ms(step):
    """Server-side CPU per event: the server, its database and Redis (wrangler dev's helpers left out)."""
    parts = [_per_event_ms(step, group) for group in ("server", "postgres", "redis")]
    return sum(part for part in parts if part is not None) if parts[0] is not None else None


def run(server, config):
    groups = _process_groups(server)
    samples = []

    def on_ready(info):
        samples.append((info, _sample(groups)))

    result = run_job(
        job(
            server,
            "sustained",
            urls=server.urls,
            sockets=config.sustained_sockets,
            stores=config.sustained_stores,
            prefix=config.store("sustained"),
            rates=list(config.sustained_rates),
            step_s=config.sustained_step_s,
            drain_s=config.sustained_drain_s,
            limit_ms=config.sustained_limit_ms,
            min_share=config.sustained_min_share,
        ),
        **aux(server),
        on_ready=on_ready,
        sample_memory=False,
        timeout=config.job_timeout,
    )
    steps = []
    for (_, before), (step, after) in itertools.pairwise(samples):
        used = _used(before, after)
        machine = used.pop("machine")
        step["cpu_s"] = used
        step["other_cpu_s"] = max(0.0, machine - sum(used.values()) - step["loadgen_cpu_s"])
        step["loadgen_pct"] = 100 * step["loadgen_cpu_s"] / step["wall_s"]
        steps.append(step)
    result.pop("steps", None)
    details = {"run": result, "steps": steps, "notes": _notes(steps)}
    return {"metrics": _metrics(steps, result, config), "details": details}


def _metrics(steps, result, config):
    limit = f"{config.sustained_limit_ms:g}"
    held = [step for step in steps if step["holds"]]
    top = held[-1] if held else None
    metrics = {
        metric("sus_held", f"highest rate held, p99 delivery < {limit} ms (events/s)", "{:,.0f}", "higher"): (
            top["rate"] if top else 0
        ),
        metric("sus_open_s", "time to open the sockets (s)", "{:.2f}", "lower"): result["open_s"],
    }
    if not steps:
        return metrics
    base = steps[0]
    at = f"at {base['rate']:,}/s"
    for key, name in (("ack_ms", "ack"), ("delivery_ms", "delivery")):
        for point in ("p50", "p99"):
            metrics[metric(f"sus_base_{name}_{point}", f"{at}: {name} {point} (ms)", "{:.1f}", "lower")] = base[key][
                point
            ]
    rows = (
        ("server", "server process CPU per event (ms)", "lower"),
        ("postgres", "PostgreSQL CPU per event (ms)", "lower"),
        ("redis", "Redis CPU per event (ms)", "lower"),
        ("aux", "wrangler dev's node + proxy workerd CPU per event (ms)", None),
    )
    for group, label, better in rows:
        # registered on every server, so the row keeps its place in the table where only the reference has it
        key = metric(f"sus_base_cpu_{group}", f"{at}: {label}", "{:.3f}", better)
        value = _per_event_ms(base, group)
        metrics[key] = None if group == "aux" and not value else value
    total = metric("sus_base_cpu_total", f"{at}: server-side CPU per event, all but wrangler's (ms)", "{:.3f}", "lower")
    metrics[total] = _total_ms(base)
    if top is not None:
        metrics[metric("sus_top_delivery_p99", "at the highest rate held: delivery p99 (ms)", "{:.1f}", None)] = top[
            "delivery_ms"
        ]["p99"]
        metrics[
            metric("sus_top_cpu_total", "at the highest rate held: server-side CPU per event (ms)", "{:.3f}", "lower")
        ] = _total_ms(top)
    metrics[metric("sus_loadgen_pct", "load generator CPU, max over the steps (% of one core)", "{:.0f}%", None)] = max(
        step["loadgen_pct"] for step in steps
    )
    return metrics


def _notes(steps):
    """The ramp in one line: each step's rate, p99 delivery and, where it failed, why."""
    parts = []
    for step in steps:
        text = f"{step['rate']:,}/s p99 {_ms(step['delivery_ms']['p99'])}"
        if not step["holds"]:
            why = [f"{step['events_acked']:,} of {step['events_offered']:,} acked"]
            why += [f"{step[key]:,} {key}" for key in ("missing", "errors", "dropped") if step[key]]
            text += " NOT held (" + ", ".join(why) + ")"
        parts.append(text)
    return ["ramp: " + "; ".join(parts)] if parts else []


def _ms(value):
    return "-" if value is None else f"{value:.1f} ms"
