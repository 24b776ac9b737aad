"""Real LiveStore 0.4.0 clients (``makeWsSync`` / ``makeHttpSync``) in crowds: six behind nginx
(``deploy/nginx.conf``) over four daphne processes with one SIGKILLed while they push, and (issue 34's triage)
three ``makeHttpSync`` clients on one daphne.

Each client runs ``v04/scenarios/crowd.mjs``, which reports what crossed its wire request by request (every push
with its events and answer, every pull with its cursor and the events that answered it; ``v04/lib/request-log.mjs``)
and writes each client's whole wire log next to the test's files. The tests judge the server's part from that and
from the log the server stored, unconditionally:

- the stored log is e1, e2, … without a gap, and every event in it was carried at that seqNum by a client's push
  that the server did not refuse;
- every push the server acknowledged is stored as pushed; every pull was answered from its cursor on, seqNum by
  seqNum, with the stored events; the server refused nothing but a push on a stale parent (``ServerAheadError``
  with the right numbers) or a batch whose own events do not chain (livesync stores no gap; the reference would);
- every store's confirmed eventlog is the stored log up to how far it got.

0.4.0 clients pull again with their cursor after they reconnect, so every client must end with every event, once,
in the server's order. LiveStore 0.4.0 clients also fail on their own (livestorejs/livestore#1530, fixed after
0.4.0: "a session could continue sending later pending events after an earlier push was rejected" and "the leader
could accept work but temporarily lose track of it"); a test reports that as the client's expected failure only
once everything above has passed and only for what the client's own wire log proves (``client_faults``).
"""

import collections
import time

import pytest

from tests.interop.test_load_balancer import (  # the fixture and helpers only, never the test itself
    KILL_AT,
    balanced_cluster,  # noqa: F401 (a fixture)
    settled_head,
    sockets_served,
    wait_until,
)
from tests.support.cluster import database_head, stored_events
from tests.support.metrics import samples

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("v04_project")]

CLIENTS = 6
TODOS_PER_CLIENT = 150
# A scenario's hard timeout; its soft waits are an eighth of it each.
TIMEOUT_MS = 90000
# An http client polls every 500 ms: one that has sent no pull for this long has stopped pulling.
STOPPED_PULLING_S = 8


def entry(event):
    """A stored event as the scenario lists events: ``e<seqNum> <name> <todo id>``."""
    return f"e{event['seqNum']} {event['name']} {event['args']['id']}"


def seq_of(listed):
    return int(listed.split()[0][1:])


def todo_of(listed):
    return listed.split()[2]


def chained(push):
    """Whether a push's events form one chain: consecutive seqNums on from its parent."""
    seqs = [seq_of(listed) for listed in push["entries"]]
    return seqs == list(range(push["parent"] + 1, push["parent"] + 1 + len(seqs)))


def assert_server_part(stores, stored, unanswered_ok):
    """The server's part of a crowd run, whatever the clients did (see the module docstring).

    ``unanswered_ok(outcome)`` says which requests may end without an answer: a request the client aborted
    itself, and behind nginx one in flight on the killed process.
    """
    log = [entry(event) for event in stored]
    head = len(log)
    assert [event["seqNum"] for event in stored] == list(range(1, head + 1)), "the stored log has a gap"
    in_log = set(log)
    carried = set()
    for store in stores:
        client = store["clientId"]
        assert store["pullBreaks"] == [], (client, store["pullBreaks"])
        for request in store["requests"]:
            outcome, where = request["outcome"], (client, request["via"], request["outcome"])
            if request.get("pull"):
                assert request["breaks"] == [], (*where, request["cursor"], request["breaks"])
                assert set(request["entries"]) <= in_log, (*where, sorted(set(request["entries"]) - in_log)[:5])
                # An http client polls until it is shut down: its last pull may be on its way as it reports.
                last_pull = outcome == "in flight" and request["at"] == store["lastPullAt"]
                assert outcome in ("ok", "open", "Interrupt") or last_pull or unanswered_ok(outcome), where
                continue
            if outcome == "ok":
                assert set(request["entries"]) <= in_log, (*where, sorted(set(request["entries"]) - in_log)[:5])
            elif outcome == "ServerAheadError":
                failure = request["failure"]
                assert failure["providedNum"] == request["parent"] != failure["minimumExpectedNum"], (*where, failure)
                assert failure["minimumExpectedNum"] <= head, (*where, failure)
            elif outcome == "UnknownError":
                # livesync refuses a batch that would leave a gap; only one whose own events do not chain.
                assert failure_text(request).startswith("Invalid batch"), (*where, request["failure"])
                assert not chained(request), (*where, request["parent"], request["entries"])
                continue
            else:
                # Unanswered, or answered Interrupt because the client dropped the push itself (it may be stored).
                assert outcome == "Interrupt" or unanswered_ok(outcome), (*where, request["entries"][:2])
            carried |= set(request["entries"])
        # What the client holds as confirmed is what the server stored, as far as it got.
        assert store["eventlog"] == log[: len(store["eventlog"])], client
    assert in_log <= carried, f"stored events no push carried there: {sorted(in_log - carried)[:5]}"
    return log


def failure_text(request):
    return str(request.get("failure", {}).get("cause", ""))


def client_faults(store, log):
    """What this LiveStore 0.4.0 client did wrong on its own, each proven from its own wire log (none when the
    client behaved): see ``v04/scenarios/crowd.mjs`` and livestorejs/livestore#1530."""
    client, head, faults = store["clientId"], len(log), []
    pushes = [request for request in store["requests"] if request.get("push")]
    acknowledged = {}
    for push in pushes:
        todos = collections.Counter(todo_of(listed) for listed in push["entries"])
        twice = sorted(todo for todo, count in todos.items() if count > 1)
        if twice:
            faults.append(f"{client} pushed {twice[0]} twice in one push ({push['via']}: {short(push)})")
        for listed in push["entries"]:
            before = acknowledged.get(todo_of(listed))
            if before is not None and before != listed:
                faults.append(
                    f"{client} pushed {todo_of(listed)} again as {listed.split()[0]} after the server "
                    f"acknowledged it as {before.split()[0]}"
                )
        if push["outcome"] == "ok":
            for listed in push["entries"]:
                acknowledged.setdefault(todo_of(listed), listed)
        if not chained(push):
            faults.append(
                f"{client} sent a push whose events do not chain ({push['via']}: {short(push)}), "
                f"answered {push['outcome']} {failure_text(push)!r}"
            )
        if push["parent"] > head:
            faults.append(
                f"{client} pushed on e{push['parent']}, past everything the server ever stored "
                f"(e{head}) ({push['via']}: {short(push)})"
            )
    # Its todos in the order it committed them: one it never pushed, followed by one it did, was skipped.
    pushed = [
        f"{client}-{n:03d}" in {todo_of(listed) for push in pushes for listed in push["entries"]}
        for n in range(TODOS_PER_CLIENT)
    ]
    skipped = [n for n in range(TODOS_PER_CLIENT) if not pushed[n] and any(pushed[n + 1 :])]
    if skipped:
        faults.append(f"{client} never pushed its todo {skipped[0]} ({len(skipped)} such) but pushed later ones")
    stored_times = collections.Counter(todo_of(listed) for listed in log)
    for applied in store["appliedTwice"]:
        todo, times = applied.split(" x")
        if todo.startswith(f"{client}-") and int(times) > stored_times[todo]:
            faults.append(
                f"{client} applied its own {todo} {times} times, the server stored it {stored_times[todo]} time(s)"
            )
            break
    behind = store["upstreamHead"] < head
    if behind and store["lastPullAt"] is not None and store["via"] == "http":
        silent = (store["reportedAtEpoch"] - store["lastPullAt"]) / 1000
        if silent > STOPPED_PULLING_S:
            faults.append(
                f"{client} stopped pulling at e{store['upstreamHead']} ({silent:.0f} s without a pull "
                "after the server answered its last one)"
            )
    if behind and store["via"] == "ws":
        faults += [
            f"{client} closed its own connection {drop['connection']} (its ping watchdog) and sent no pull on a later "
            "one, though the server answered it there"
            for drop in store["selfClosed"]
            if not drop["pulledLater"] and drop["answeredLater"]
        ]
    return list(dict.fromkeys(faults))


def short(push):
    listed = push["entries"]
    shown = [f"{item.split()[0]} {todo_of(item)}" for item in listed[:6]]
    return f"parent e{push['parent']}, [{', '.join(shown)}{', …' if len(listed) > 6 else ''}]"


def judge(stores, stored, unanswered_ok, workload_todos):
    """Asserts the server's part, then that every client ends with every stored event once, in order, unless
    its own wire log proves it failed on its own; returns those faults (the test's expected failure)."""
    log = assert_server_part(stores, stored, unanswered_ok)
    head = len(log)
    stored_todos = collections.Counter(todo_of(listed) for listed in log)
    assert set(stored_todos) <= workload_todos, sorted(set(stored_todos) - workload_todos)[:5]
    faults = {}
    for store in stores:
        client = store["clientId"]
        own = client_faults(store, log)
        if own:
            faults[client] = own
            continue
        progress = {key: store[key] for key in ("upstreamHead", "pending", "sessionHead", "sessionPending")}
        assert progress == {"upstreamHead": head, "pending": 0, "sessionHead": head, "sessionPending": 0}, (
            client,
            progress,
            store["unanswered"][-3:],
        )
        assert store["todoIds"] == sorted(stored_todos), client
        assert store["timesCreated"] == max(stored_todos.values()), client
    if not faults:
        assert stored_todos == collections.Counter(workload_todos), "the server lost or repeated an event"
    return [fault for own in faults.values() for fault in own]


def xfail_for(faults, wire_dir):
    if faults:
        pytest.xfail(
            f"LiveStore 0.4.0 client bug (livestorejs/livestore#1530): {'; '.join(faults[:6])}"
            f"{f' (+{len(faults) - 6} more)' if len(faults) > 6 else ''}; the server's log, acknowledgements and "
            f"pull answers were all right (wire logs: {wire_dir})"
        )


def summaries(stores):
    keys = (
        "clientId",
        "upstreamHead",
        "pending",
        "sessionHead",
        "sessionPending",
        "todoCount",
        "timesCreated",
        "connectionsOpened",
        "pullsSent",
        "failures",
        "committedAt",
        "shutdown",
    )
    return [{**{key: store[key] for key in keys}, "unanswered": store["unanswered"][-3:]} for store in stores]


def workload(clients):
    return {f"client-{client:02d}-{todo:03d}" for client in range(clients) for todo in range(TODOS_PER_CLIENT)}


def http_requests_served(server):
    """The 0.4 HTTP requests ``server`` accepted, from its own metrics."""
    return sum(
        value
        for name, labels, value in samples(server.http_url)
        if name == "livesync_handshakes_total"
        and (labels.get("transport"), labels.get("outcome")) == ("http", "accepted")
    )


# How each transport's clients commit, to keep the 0.4.0 client's own race (converge.mjs, mixed.mjs) out of the
# way: over ws a client commits its next todo as soon as its leader took the last one (with pauses between todos
# its pushes carry one event each, race and rebase all the time, and a round takes minutes on a loaded machine);
# over http every client commits its 150 todos at once (paced, the race strikes nearly every run: see
# test_http_clients_on_one_daphne_fail_on_their_own_not_the_server).
COMMITTING = {"ws": ["--pace-ms", "0"], "http": ["--pace-ms", "0"]}


@pytest.mark.faults
@pytest.mark.chaos
@pytest.mark.parametrize("round_number", [1, 2])
@pytest.mark.parametrize("transport", ["ws", "http"])
def test_every_v04_client_gets_every_event_after_a_process_behind_nginx_is_killed(
    balanced_cluster,  # noqa: F811 (the fixture imported above)
    v04_scenarios,
    tmp_path,
    transport,
    round_number,
):
    """Six 0.4.0 clients (one Node process each) create 150 todos each through nginx; once 30% of the events
    are stored the busiest daphne process is SIGKILLed (most sockets over ws, most requests over http). Every
    client must end with all 900 events, once, in the server's order."""
    balancer, servers, database_url = balanced_cluster
    store_id = v04_scenarios.new_store_id(f"crowd-v04-{transport}-{round_number}")
    total = CLIENTS * TODOS_PER_CLIENT
    files = {name: tmp_path / f"{name}-{round_number}" for name in ("start", "report", "wire")}
    ready = [tmp_path / f"ready-{round_number}-{client}" for client in range(CLIENTS)]
    running = [
        v04_scenarios.start(
            "crowd",
            [balancer],
            store_id=store_id,
            args=[
                *("--transport", transport, "--timeout-ms", str(TIMEOUT_MS), *COMMITTING[transport]),
                *("--first-client", str(client), "--todos-per-client", str(TODOS_PER_CLIENT)),
                *("--total-events", str(total), "--ready-file", str(ready[client])),
                *("--start-file", str(files["start"]), "--report-file", str(files["report"])),
                *("--wire-dir", str(files["wire"])),
            ],
        )
        for client in range(CLIENTS)
    ]
    assert wait_until(lambda: all(path.exists() for path in ready), 60), "the clients never came up"
    if transport == "ws":
        assert wait_until(lambda: sum(map(sockets_served, servers)) == CLIENTS, 30), "the clients never connected"
    load = sockets_served if transport == "ws" else http_requests_served
    started = time.monotonic()
    files["start"].touch()
    assert wait_until(lambda: database_head(database_url, store_id) >= total * KILL_AT, 60), "no client pushed"
    busiest = max(servers, key=load)
    killed_load = load(busiest)
    busiest.kill()
    head_at_kill = database_head(database_url, store_id)
    stored_at_settle = settled_head(database_url, store_id)
    stored, head = stored_events(database_url, store_id)
    files["report"].write_text(f"{head} {len({event['args']['id'] for event in stored})}")
    stores = [store for scenario in running for store in scenario.result()["stores"]]
    for store in stores:
        store["via"] = transport
    took = time.monotonic() - started
    print(
        f"{transport} round {round_number}: killed :{busiest.port} ({killed_load:.0f}) at e{head_at_kill}, "
        f"head e{head} (settled e{stored_at_settle}) after {took:.1f} s; wire logs in {files['wire']}"
    )
    print("stores:", *summaries(stores), sep="\n")

    assert killed_load > 0 and head_at_kill < total, (killed_load, head_at_kill)
    # Nothing the clients did there may be missing: behind nginx, a request in flight on the killed process
    # ends without an answer (the connection reset, nginx's 502), and the client aborts some of its own.
    faults = judge(stores, stored, lambda outcome: outcome.startswith(("no answer", "HTTP 502")), workload(CLIENTS))
    if transport == "ws":
        # The killed process's clients reconnected through nginx and pulled again there, from their cursor.
        moved = [store for store in stores if store["connectionsOpened"] > 1]
        assert moved, summaries(stores)
        for store in moved:
            pulled_on = store["pulledOnConnections"]
            assert store["connectionsOpened"] in pulled_on or store["clientId"] in str(faults), (
                store["clientId"],
                sorted(pulled_on),
            )
    xfail_for(faults, files["wire"])


def test_http_clients_on_one_daphne_fail_on_their_own_not_the_server(embedded_server, v04_scenarios, tmp_path):
    """Issue 34's triage: three ``makeHttpSync`` clients in one Node process create 150 todos each, 20-60 ms
    apart, against one daphne (the embedded default). On a loaded machine they end short of the 450 (e.g.
    300/300/195) with todos created twice.

    The server answered right every time: the checks of ``assert_server_part`` pass on every run. What went wrong
    is in each client's own requests: a push carrying one of its todos twice (``[e49 client-00-019, …, e53
    client-00-018, e54 client-00-019, …]``), a push of a todo the server had acknowledged at another seqNum, a
    push whose events skip a seqNum (``[e26, e27, e29]``, refused as ``Invalid batch``, retried unchanged for
    good), a push on a parent the server never had, a todo never pushed at all, and a leader that stopped
    pulling after a correctly answered pull (a LiveStore assertion in its merge, "New local head must be greater
    than or equal to the previous local head", which ``onSyncError: 'ignore'`` swallows): the session-to-leader
    race of livestorejs/livestore#1530.
    """
    wire_dir = tmp_path / "wire"
    result = v04_scenarios.run(
        "crowd",
        [embedded_server],
        args=[
            *("--transport", "http", "--clients", "3", "--todos-per-client", str(TODOS_PER_CLIENT)),
            *("--pace-ms", "40", "--total-events", str(3 * TODOS_PER_CLIENT), "--timeout-ms", "48000"),
            *("--stored-log", "--wire-dir", str(wire_dir)),
        ],
    )
    stores = result["stores"]
    for store in stores:
        store["via"] = "http"
    print("stores:", *summaries(stores), sep="\n")
    # The only requests without an answer are the client's own: it aborts a push when a pull makes it rebase.
    faults = judge(
        stores, result["storedLog"], lambda outcome: outcome == "no answer (This operation was aborted)", workload(3)
    )
    xfail_for(faults, wire_dir)
