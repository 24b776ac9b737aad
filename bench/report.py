"""Tables, ratios between servers and the issue's targets, from the results of a run."""

import statistics

from bench.scenarios import METRICS

REFERENCE = "reference"

# The reference as measured on this kind of machine when the targets were set; used for the target check
# only when the reference could not run in this invocation.
BRIEF_REFERENCE = {
    "push_b1_eps": 120,
    "push_b10_eps": 1100,
    "push_b100_eps": 2100,
    "pull_10000_s": 0.6,
    "fan_20_p50": 10,
    "fan_20_p99": 20,
    "many_total_s": 7,
}


def _fmt(fmt, value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _ratio(value, reference):
    if value is None or reference in (None, 0) or isinstance(value, bool):
        return "-"
    return f"{value / reference:.2f}x"


def _table(header, rows, right=None):
    """Columns left-aligned, except those in ``right`` (default: every column but the first)."""
    right = set(range(1, len(header))) if right is None else set(right)
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            str(cell).rjust(widths[i]) if i in right else str(cell).ljust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def median_of_rounds(entries):
    """One result entry from a scenario's rounds on one server: each metric's median over the rounds that ran
    (a yes/no metric is yes only if every round said yes); every round's details are kept."""
    ran = [entry for entry in entries if "metrics" in entry]
    if len(entries) == 1 or not ran:
        return entries[0]
    keys = list(dict.fromkeys(key for entry in ran for key in entry["metrics"]))
    metrics = {}
    for key in keys:
        values = [entry["metrics"][key] for entry in ran if entry["metrics"].get(key) is not None]
        if not values:
            metrics[key] = None
        elif any(isinstance(value, bool) for value in values):
            metrics[key] = all(values)
        else:
            metrics[key] = statistics.median(values)
    notes = [note for entry in ran for note in entry.get("details", {}).get("notes", [])]
    failed = [entry.get("error") or entry.get("unavailable") for entry in entries if "metrics" not in entry]
    if failed:
        notes.append(f"{len(failed)} of {len(entries)} rounds failed: {str(failed[0]).splitlines()[0]}")
    return {"metrics": metrics, "details": {"rounds": [entry.get("details") for entry in entries], "notes": notes}}


def scenario_table(title, description, per_target, ratios=()):
    """``per_target``: ``{target: {"metrics": …} | {"unavailable": why} | {"error": what}}``; ``ratios``:
    ``[(column label, target, baseline)]``, a column for each pair whose baseline has results here."""
    targets = list(per_target)

    def measured(target):
        return per_target.get(target, {}).get("metrics")

    ratios = [(label, target, base) for label, target, base in ratios if measured(base) and target in per_target]
    keys = []
    for target in targets:
        for key in per_target[target].get("metrics", {}):
            if key not in keys:
                keys.append(key)
    order = {key: index for index, key in enumerate(METRICS)}
    keys.sort(key=lambda key: order.get(key, len(order)))
    # rows with no value anywhere (e.g. wrangler's CPU when the reference did not run) are left out
    keys = [k for k in keys if any(per_target[t].get("metrics", {}).get(k) is not None for t in targets)]
    header = ["metric", *targets, *[label for label, _, _ in ratios]]
    rows = []
    for key in keys:
        label, fmt, better = METRICS.get(key, (key, "{}", None))
        arrow = {"higher": " (higher is better)", "lower": " (lower is better)"}.get(better, "")
        row = [label + arrow]
        for target in targets:
            row.append(_fmt(fmt, per_target[target].get("metrics", {}).get(key)))
        for _, target, base in ratios:
            value = (measured(target) or {}).get(key)
            row.append(_ratio(value, measured(base).get(key)) if better else "")
        rows.append(row)
    lines = [f"## {title}", description, "", _table(header, rows) if rows else "(no results)"]
    for target in targets:
        entry = per_target[target]
        if "unavailable" in entry:
            lines.append(f"{target}: unavailable - {entry['unavailable']}")
        if "error" in entry:
            lines.append(f"{target}: FAILED - {entry['error'].splitlines()[0]}")
        for note in entry.get("details", {}).get("notes", []):
            lines.append(f"{target}: {note}")
    return "\n".join(lines)


def scaleout_table(title, description, results, config):
    """``results``: ``{processes: {"metrics": …} | {"error"/"unavailable": …}}``."""
    if not results:
        return f"## {title}\n(not run)"
    if "unavailable" in results:
        return f"## {title}\n{description}\n\nunavailable - {results['unavailable']}"
    counts = list(results)
    first = results[counts[0]].get("metrics", {})
    header = ["metric", *[f"{n} process{'es' if n > 1 else ''}" for n in counts], *[f"{n} vs 1" for n in counts[1:]]]
    rows = []
    specs = [
        (f"push_b{b}_eps", f"scenario 1, batch {b}: acknowledged events/s", "{:,.0f}", True)
        for b in config.scale_push_batches
    ]
    specs += [
        (
            "many_total_s",
            f"scenario 4: {config.many_stores} stores x {config.many_events} events, total (s)",
            "{:.2f}",
            False,
        ),
        ("many_eps", "scenario 4: events/s", "{:,.0f}", True),
        ("correct", "every event delivered once, in order, on every process", "{}", False),
        ("loadgen_pct", "load generator CPU, max (% of one core)", "{:.0f}%", False),
    ]
    for key, label, fmt, ratio in specs:
        row = [label, *[_fmt(fmt, results[n].get("metrics", {}).get(key)) for n in counts]]
        for n in counts[1:]:
            value = results[n].get("metrics", {}).get(key)
            row.append(_ratio(value, first.get(key)) if ratio else "")
        rows.append(row)
    lines = [f"## {title}", description, "", _table(header, rows)]
    for n in counts:
        if "error" in results[n]:
            lines.append(f"{n} processes: FAILED - {results[n]['error'].splitlines()[0]}")
    return "\n".join(lines)


# -- targets -----------------------------------------------------------------------------------------------


def _get(results, scenario, target, key):
    return results.get(scenario, {}).get(target, {}).get("metrics", {}).get(key)


def check_targets(results, scaleout, config, livesync, reference_name=REFERENCE):
    """``[(target text, server, verdict "PASS"/"MISS"/"n/a", what was measured)]`` for the servers ``livesync``,
    against the server named ``reference_name`` (the reference driven by the same load generator)."""
    checks = []
    have_reference = any("metrics" in per.get(reference_name, {}) for per in results.values())

    def ref(scenario, key):
        value = _get(results, scenario, reference_name, key)
        if value is None and key in BRIEF_REFERENCE:
            return BRIEF_REFERENCE[key], " (reference as given in the issue)"
        return value, ""

    ran = set(results)
    scenario_of = {
        "push": "push",
        "cold": "pull",
        "fan-out": "fanout",
        "many": "many",
        "idle": "idle",
        "10,000 idle": "idle",
        "sustained": "sustained",
    }

    def add(text, target, ok, measured):
        scenario = next((name for prefix, name in scenario_of.items() if text.startswith(prefix)), None)
        if scenario is not None and (scenario not in ran or target not in results[scenario]):
            return  # not run this time (--only), or not against this server (it runs some scenarios only)
        checks.append((text, target, "n/a" if ok is None else ("PASS" if ok else "MISS"), measured))

    for target in livesync:
        for batch in (1, 100):
            value, (reference, note) = (
                _get(results, "push", target, f"push_b{batch}_eps"),
                ref("push", f"push_b{batch}_eps"),
            )
            ok = None if value is None or reference is None else value >= 5 * reference
            add(
                f"push batch {batch} >= 5x reference",
                target,
                ok,
                f"{_fmt('{:,.0f}', value)} vs {_fmt('{:,.0f}', reference)} events/s{note}",
            )
        value, (reference, note) = _get(results, "pull", target, "pull_10000_s"), ref("pull", "pull_10000_s")
        ok = None if value is None or reference is None else reference >= 5 * value
        add(
            "cold pull of 10,000 >= 5x faster",
            target,
            ok,
            f"{_fmt('{:.3f}', value)} s vs {_fmt('{:.3f}', reference)} s{note}",
        )
        small, large = (
            _get(results, "pull", target, "pull_10000_delta_mb"),
            _get(results, "pull", target, "pull_100000_delta_mb"),
        )
        ok = None if small is None or large is None else large <= 2 * small + 16
        add(
            "cold pull in bounded memory (peak growth at 100,000 ~ at 10,000)",
            target,
            ok,
            f"+{_fmt('{:.1f}', small)} MB at 10,000, +{_fmt('{:.1f}', large)} MB at 100,000"
            + ("" if large is not None else " (100,000 needs --large)"),
        )
        value, (reference, note) = _get(results, "fanout", target, "fan_20_p99"), ref("fanout", "fan_20_p99")
        ok = None if value is None or reference is None else value <= reference / 2
        add(
            "fan-out p99 with 20 subscribers <= half the reference's",
            target,
            ok,
            f"{_fmt('{:.1f}', value)} ms vs {_fmt('{:.1f}', reference)} ms{note}",
        )
        value = _get(results, "fanout", target, "fan_200_p99")
        ok = None if value is None or reference is None else value < reference
        add(
            "fan-out p99 with 200 subscribers < reference p99 with 20",
            target,
            ok,
            f"{_fmt('{:.1f}', value)} ms vs {_fmt('{:.1f}', reference)} ms{note}"
            + ("" if value is not None else " (200 subscribers need --large)"),
        )
        value, (reference, note) = _get(results, "many", target, "many_total_s"), ref("many", "many_total_s")
        ok = None if value is None or reference is None else reference >= 10 * value
        add(
            "many stores >= 10x faster", target, ok, f"{_fmt('{:.2f}', value)} s vs {_fmt('{:.2f}', reference)} s{note}"
        )
        for n in config.idle_sockets:
            value, opened = (
                _get(results, "idle", target, f"idle_{n}_kb"),
                _get(results, "idle", target, f"idle_{n}_open"),
            )
            ok = None if value is None else value < 50 and opened == n
            add(
                f"idle sockets < 50 KB each at {n:,} in one process",
                target,
                ok,
                f"{_fmt('{:.1f}', value)} KB per socket, {_fmt('{:,.0f}', opened)} of {n:,} open",
            )
        if 10_000 not in config.idle_sockets:
            add("10,000 idle sockets in one process", target, None, "needs --large")
        value, (held, note) = _get(results, "sustained", target, "sus_held"), ref("sustained", "sus_held")
        ok = None if value is None or not held else value >= 5 * held
        add(
            "sustained: rate held >= 5x reference",
            target,
            ok,
            f"{_fmt('{:,.0f}', value)} vs {_fmt('{:,.0f}', held)} events/s{note}",
        )
        value, (cpu, note) = (
            _get(results, "sustained", target, "sus_base_cpu_total"),
            ref("sustained", "sus_base_cpu_total"),
        )
        ok = None if value is None or cpu is None else value <= cpu / 5
        add(
            "sustained: server-side CPU per event <= 1/5 reference",
            target,
            ok,
            f"{_fmt('{:.3f}', value)} vs {_fmt('{:.3f}', cpu)} ms at {config.sustained_rates[0]:,}/s{note}",
        )
    if scaleout and "unavailable" not in scaleout:
        one, two, four = (scaleout.get(n, {}).get("metrics", {}) for n in (1, 2, 4))
        ratio = (two.get("many_eps") / one["many_eps"]) if one.get("many_eps") and two.get("many_eps") else None
        add(
            "scale-out: 2 processes >= 1.5x many-stores throughput of 1",
            "livesync-postgres x N",
            None if ratio is None else ratio >= 1.5,
            f"{_fmt('{:.2f}', ratio)}x",
        )
        loads = [m.get("loadgen_pct") for m in (one, two, four) if m.get("loadgen_pct") is not None]
        add(
            "scale-out: load generator well under a core (< 50%)",
            "livesync-postgres x N",
            None if not loads else max(loads) < 50,
            f"max {_fmt('{:.0f}', max(loads) if loads else None)}% of one core",
        )
        add(
            "scale-out: 4 processes correct",
            "livesync-postgres x N",
            four.get("correct"),
            f"{_fmt('{}', four.get('correct'))}",
        )
    if not have_reference:
        checks.append(
            (f"({reference_name} did not run: ratios use the reference numbers given in the issue, if any)", "", "", "")
        )
    return checks


def targets_table(checks):
    rows = [[text, target, verdict, measured] for text, target, verdict, measured in checks]
    return "## Targets\n" + _table(["target", "server", "verdict", "measured"], rows, right=())


# Share of the lower ceiling a batch-1 push should reach (issue: at least half).
CEILING_SHARE_TARGET = 0.5


def ceilings_table(limits, push_results, targets):
    """The machine's limits, then each livesync server's batch-1 push as a share of the lower of its two."""
    echo, sqlite, postgres = limits["echo"], limits["sqlite"], limits["postgres"]
    rows = [
        ["bare Channels echo under daphne: sequential round trips/s", _fmt("{:,.0f}", echo["per_s"])],
        ["bare Channels echo: daphne CPU per round trip (ms)", _fmt("{:.2f}", echo["server_cpu_ms"])],
        ["SQLite WAL, synchronous=FULL: 1-row commits/s", _fmt("{:,.0f}", sqlite["commits_per_s"])],
    ]
    if "unavailable" in postgres:
        rows.append(["PostgreSQL: unavailable", postgres["unavailable"]])
    else:
        rows += [
            [
                "PostgreSQL, one connection, synchronous_commit=on: self-committing 1-row INSERTs/s",
                _fmt("{:,.0f}", postgres["commits_per_s"]),
            ],
            ["PostgreSQL, one connection: events/s in 100-row commits", _fmt("{:,.0f}", postgres["events_per_s_100"])],
        ]
    text = "## Ceilings (this machine, this run)\n" + _table(["limit", "measured"], rows)
    shares = []
    for target in targets:
        backend = getattr(target, "backend", None)
        entry = push_results.get(target.name, {})
        pushed = entry.get("metrics", {}).get("push_b1_eps")
        ceiling = ceilings_lower(limits, backend)
        if backend is None or pushed is None or ceiling is None:
            continue
        share = pushed / ceiling
        bound = sequential_bound(limits, backend)
        verdict = "PASS" if share >= CEILING_SHARE_TARGET else "MISS"
        shares.append(
            [
                target.name,
                _fmt("{:,.0f}", pushed),
                _fmt("{:,.0f}", ceiling),
                f"{share:.0%}",
                verdict,
                _fmt("{:,.0f}", bound),
                f"{pushed / bound:.0%}",
            ]
        )
    if shares:
        text += "\n\nbatch-1 push as a share of the lower of (echo, the backend's commit rate); target >= 50%\n"
        text += (
            "(sequential bound: a client that waits for each ack waits for a round trip and a commit one after the\n"
            "other, about 1 / (1/echo + 1/commit rate) pushes/s at most, so 50% of the lower ceiling is within\n"
            "reach only while the commit rate is at least the echo's; the ceilings are timed at another moment of\n"
            "the run than the pushes, so a share of the bound over 100% means the machine was faster then)\n"
        )
        text += _table(
            ["server", "push events/s", "lower ceiling", "share", "verdict", "sequential bound", "share of bound"],
            shares,
        )
    return text


def sequential_bound(limits, backend):
    """About the acked pushes/s a client waiting for each ack can get at best: one echo round trip, then one
    commit, at the moment the ceilings were timed."""
    return 1 / (1 / limits["echo"]["per_s"] + 1 / limits[backend]["commits_per_s"])


def ceilings_lower(limits, backend):
    database = limits.get(backend, {}).get("commits_per_s")
    return None if database is None else min(limits["echo"]["per_s"], database)


def stores_table(results):
    """Per backend and run size: ms per new store in the first and last tenth, their ratio, RSS, bytes per store."""
    rows = []
    for backend, runs in results.items():
        if "unavailable" in runs:
            rows.append([backend, "-", "unavailable: " + runs["unavailable"], "", "", "", "", ""])
            continue
        for count, run in runs.items():
            first, last = run["ms_per_store"][0], run["ms_per_store"][-1]
            rss = [run["rss_before"], *run["rss_after"]]
            rows.append(
                [
                    backend,
                    f"{count:,}",
                    " ".join(f"{ms:.1f}" for ms in run["ms_per_store"]),
                    f"{last / first:.2f}",
                    f"{rss[1] / 1e6:.0f} -> {rss[-1] / 1e6:.0f}",
                    f"{(rss[-1] - rss[1]) / 1e6:+.0f}",
                    f"{run['database_bytes_per_store'] / 1000:.1f}",
                    f"{run['server_cpu_ms_per_store']:.2f}",
                ]
            )
    header = [
        "backend",
        "new stores",
        "ms per new store, each tenth of the run",
        "last/first",
        "server RSS after 1st -> 10th tenth (MB)",
        "RSS growth (MB)",
        "database KB per store",
        "server CPU ms per store",
    ]
    return (
        "## Stores: the cost of one more (each a socket of its own: connect, pull, push 1 event, close; "
        "20 at a time)\n" + _table(header, rows)
    )


def first_push_table(results):
    """A new store's first push, acknowledged in ms, with spare tables and without (medians of the rounds)."""
    if "unavailable" in results:
        return "## A new store's first push (PostgreSQL)\nunavailable: " + results["unavailable"]
    rows = []
    for name, rounds in results.items():
        rows.append([name, *(f"{statistics.median(r[point] for r in rounds):.2f}" for point in ("p50", "p95", "p99"))])
    header = ["PostgreSQL + Redis", "ack p50 (ms)", "ack p95 (ms)", "ack p99 (ms)"]
    return "## A new store's first push (one at a time, 50 ms apart; medians of alternating rounds)\n" + _table(
        header, rows
    )
