"""Real LiveStore 0.3.1 clients while the daphne process they sync through is SIGKILLed and restarted.

Two daphne processes share a fresh PostgreSQL database and Redis. ``scenarios/crash-restart.mjs`` runs three
clients and asks, over stdio, for the kill at its chosen moment; the test SIGKILLs that process, restarts it
on the same port and lets the scenario go on. Every client must end with every todo anyone committed, each
created once, and the server must hold each event once.

- ``idle``: the process dies between its client's pushes. The client reconnects by itself (and never pulls
  again, as 0.3.1 does); its first push on its stale parent is answered with what it missed: all converge.
- ``busy``: the process dies while its two clients push every 20 ms. Expected to fail with 0.3.1 clients
  (see the last test): a push in flight when the connection drops is never answered, so the client's
  leader waits for a rebase that only a broadcast forwarded to its new, position-less socket can bring, and
  that broadcast skips whatever the client missed: it ends "in sync" without those todos, or never syncs.
"""

import collections
import json
import queue
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.daphne import DaphneServer
from tests.support.databases import postgres_database
from tests.support.services import REDIS_URL, require_redis

pytestmark = [pytest.mark.interop, pytest.mark.faults]

INTEROP_DIR = Path(__file__).resolve().parent
AUTH_TOKEN = "insecure-token-change-me"  # the servers here validate no payload; the clients send one anyway

SCENARIO_TIMEOUT_S = 90
PARENT_MISMATCH = re.compile(r"^Invalid parent event number\. Received e(\d+) but expected e(\d+)$")

# What each mode of the scenario commits: {clientId: {phase: todos}}.
COMMITS = {
    "busy": {client: {"before": 5, "during": 30, "after": 5} for client in ("client-a1", "client-a2", "client-b")},
    "idle": {
        "client-a": {"before": 5, "back": 5, "after": 5},
        "client-b1": {"before": 5, "during": 10, "after": 5},
        "client-b2": {"before": 5, "during": 10, "after": 5},
    },
}


def expected_todos(mode):
    return [
        {"id": todo_id, "text": f"todo {todo_id}", "completed": False, "deleted": False, "times_created": 1}
        for todo_id in sorted(
            f"{client}-{phase}-{n:02d}"
            for client, phases in COMMITS[mode].items()
            for phase, count in phases.items()
            for n in range(count)
        )
    ]


def summarize(stores, mode):
    """Per store: how far it is in sync and which todos it lacks or has twice."""
    expected = {row["id"] for row in expected_todos(mode)}
    summary = {}
    for store in stores:
        ids = {row["id"] for row in store["todos"]}
        summary[store["clientId"]] = {
            **{key: store[key] for key in ("upstreamHead", "pending", "sessionHead", "sessionPending")},
            "todos": len(store["todos"]),
            "missing": sorted(expected - ids)[:10],
            "created twice": sorted(row["id"] for row in store["todos"] if row["times_created"] != 1)[:10],
        }
    return summary


def tail(path, lines=80):
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def stored_todo_ids(database_url, store_id):
    with psycopg.connect(database_url, autocommit=True) as connection:
        head, table = connection.execute(
            "SELECT head, table_name FROM syncapp_store WHERE store_id = %s", (store_id,)
        ).fetchone()
        rows = connection.execute(
            sql.SQL('SELECT "seqNum", "args" FROM {} ORDER BY "seqNum"').format(sql.Identifier("livesync", table))
        ).fetchall()
    return head, [seq for seq, _ in rows], [json.loads(args)["id"] for _, args in rows]


class ScenarioProcess:
    """``node scenarios/crash-restart.mjs`` with its stdout read line by line on a thread."""

    def __init__(self, command, stderr_path):
        self.stderr = stderr_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=INTEROP_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_message(self, deadline):
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("the scenario said nothing in time") from None
            if line is None:
                raise RuntimeError(f"the scenario ended without a result (exit {self.process.wait()})")
            if line.strip():
                return json.loads(line)

    def send(self, message):
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stderr.close()


@pytest.fixture
def crash_servers(tmp_path):
    require_redis()
    with postgres_database() as database_url:
        settings = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL}
        servers = [DaphneServer(tmp_path / f"daphne-{name}.log", settings) for name in ("killed", "survivor")]
        try:
            for server in servers:
                server.start()
            yield database_url, servers
        finally:
            for server in servers:
                if server.returncode is None and server.pid is not None:
                    server.stop()


def run_crash_scenario(mode, servers, tmp_path, request, record_property):
    """Runs the scenario in ``mode``, killing and restarting ``servers[0]`` when it asks; returns its result."""
    killed, survivor = servers
    store_id = f"crash-{mode}-{uuid.uuid4().hex[:12]}"
    stderr_path = tmp_path / f"crash-restart-{mode}.stderr"
    command = ["node", "scenarios/crash-restart.mjs", "--mode", mode, "--url", killed.url, "--url", survivor.url]
    command += ["--store-id", store_id, "--token", AUTH_TOKEN, "--timeout-ms", str(SCENARIO_TIMEOUT_S * 1000)]
    scenario = ScenarioProcess(command, stderr_path)
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S + 30
    restart_seconds = None
    try:
        message = scenario.next_message(deadline)
        assert message == {"control": "kill"}, message
        killed_at = time.monotonic()
        killed.kill()
        killed.start()
        restart_seconds = time.monotonic() - killed_at
        scenario.send({"control": "restarted"})
        output = scenario.next_message(deadline)
    finally:
        scenario.close()
        request.node.interop_logs = {
            f"scenario crash-restart {mode} stderr (tail)": tail(stderr_path),
            "daphne killed (tail)": killed.log_tail(),
            "daphne survivor (tail)": survivor.log_tail(),
        }
    assert "error" not in output, f"scenario crash-restart {mode} failed: {output['error']}"
    result = output["result"]
    (tmp_path / f"crash-restart-{mode}.result.json").write_text(json.dumps(result, indent=1))
    observations = {
        "process down (kill to serving again) s": round(restart_seconds, 2),
        **{f"{key}": value for key, value in result["timings"].items()},
        "connections opened per client": {wire["clientId"]: wire["connectionsOpened"] for wire in result["wire"]},
    }
    for key, value in observations.items():
        record_property(key, value)
        print(f"[crash-restart {mode}] {key}: {value}")
    return store_id, result


def assert_converged(mode, result, database_url, store_id):
    expected = expected_todos(mode)
    total = len(expected)
    assert all(result["steps"].values()), json.dumps(
        {"steps": result["steps"], "stores": summarize(result["stores"], mode), "wire": result["wire"]}, indent=1
    )
    assert result["totalEvents"] == total
    for store in result["stores"]:
        assert store["todos"] == expected, (store["clientId"], summarize(result["stores"], mode))
        progress = {key: store[key] for key in ("upstreamHead", "pending", "sessionHead", "sessionPending")}
        assert progress == {"upstreamHead": total, "pending": 0, "sessionHead": total, "sessionPending": 0}
    head, seq_nums, todo_ids = stored_todo_ids(database_url, store_id)
    assert head == total and seq_nums == list(range(1, total + 1))
    assert sorted(todo_ids) == [row["id"] for row in expected], "an event is missing from or twice in the store"


def test_clients_of_a_process_killed_between_their_pushes_converge(crash_servers, tmp_path, request, record_property):
    """A is killed while its client is idle; the others commit meanwhile; the client reconnects by itself and
    its first push (on its stale parent) is answered with everything it missed, so all clients converge."""
    database_url, servers = crash_servers
    store_id, result = run_crash_scenario("idle", servers, tmp_path, request, record_property)
    assert_converged("idle", result, database_url, store_id)
    reconnects = {wire["clientId"]: wire["connectionsOpened"] for wire in result["wire"]}
    assert reconnects == {"client-a": 2, "client-b1": 1, "client-b2": 1}
    first_push_after = result["wire"][0]["connections"][1]["errors"][:1]
    assert first_push_after == ["Invalid parent event number. Received e15 but expected e35"], first_push_after


def test_a_process_killed_in_the_middle_of_pushes_leaves_one_whole_history(
    crash_servers, tmp_path, request, record_property
):
    """A is killed while its two clients push every 20 ms, and restarted on the same port.

    The 0.3.1 clients of A may not converge afterwards (README, "A 0.3.1 client whose process dies while
    its push is in flight"): a push in flight is never answered, and a reconnected client never pulls, so
    the server cannot know its position. What the server owes every client still holds: the stored history
    is one contiguous chain, every todo in it at most once, and every event the server acknowledged to the
    client that was never disconnected (read from that client's wire log) is stored at the seqNum it was
    acknowledged at, whether or not that client ends in sync.
    """
    database_url, servers = crash_servers
    store_id, result = run_crash_scenario("busy", servers, tmp_path, request, record_property)
    head, seq_nums, todo_ids = stored_todo_ids(database_url, store_id)
    assert seq_nums == list(range(1, head + 1))
    assert len(todo_ids) == len(set(todo_ids)), "a todo was stored twice"
    reconnects = {wire["clientId"]: wire["connectionsOpened"] for wire in result["wire"]}
    assert reconnects["client-a1"] >= 2 and reconnects["client-a2"] >= 2 and reconnects["client-b"] == 1
    assert result["steps"]["syncedBefore"], result["steps"]
    (survivor_wire,) = [wire for wire in result["wire"] if wire["clientId"] == "client-b"]
    acknowledged = acknowledged_seq_nums(survivor_wire)
    # Its 5 "before" todos were acknowledged before the kill, whatever happened after it.
    assert head > 0 and len(acknowledged) >= COMMITS["busy"]["client-b"]["before"], (head, acknowledged)
    assert acknowledged[-1] <= head, f"e{acknowledged[-1]} was acknowledged to client-b but the store ends at e{head}"
    # The 0.3.1 client pushes its pending events in commit order and never again once acknowledged: what the
    # server acknowledged to it is its first commits, stored at the seqNums it acknowledged.
    stored_at = dict(zip(seq_nums, todo_ids, strict=True))
    assert [stored_at[seq_num] for seq_num in acknowledged] == commits_of("busy", "client-b")[: len(acknowledged)]


def commits_of(mode, client):
    """The todo ids ``client`` commits in ``mode``, in the order it commits them."""
    return [f"{client}-{phase}-{n:02d}" for phase, count in COMMITS[mode][client].items() for n in range(count)]


def acknowledged_seq_nums(wire):
    """The seqNums the server acknowledged to a client that kept its one connection, from its wire log: a push
    ``P+n`` (n events on parent eP) was acknowledged unless an error names its parent (``Received eP``); the
    client pushes on a parent again only after a rejection, so of several pushes on one parent only the last
    can have been acknowledged. Each acknowledged push holds e(P+1)..e(P+n)."""
    (connection,) = wire["connections"]
    rejected = collections.Counter()
    for message in connection["errors"]:
        mismatch = PARENT_MISMATCH.match(message)
        assert mismatch is not None, f"a push of {wire['clientId']} was refused: {message}"
        rejected[int(mismatch.group(1))] += 1
    pushes = [tuple(int(part) for part in push.split("+")) for push in connection["pushes"]]
    on_parent = collections.Counter(parent for parent, _ in pushes)
    acknowledged = []
    for index, (parent, size) in enumerate(pushes):
        later = any(other == parent for other, _ in pushes[index + 1 :])
        assert rejected[parent] in (on_parent[parent], on_parent[parent] - 1), (parent, connection)
        if rejected[parent] < on_parent[parent] and not later:
            acknowledged.extend(range(parent + 1, parent + size + 1))
    assert connection["acks"] == sum(1 for parent in on_parent if rejected[parent] < on_parent[parent]), connection
    assert acknowledged == sorted(set(acknowledged)), f"two acknowledged pushes overlap: {connection['pushes']}"
    return acknowledged
