"""What a user of a todo store should see, shared by the 0.3.1 and 0.4.0 interop tests (same schema, same workload)."""


def todo(todo_id, completed=False, deleted=False):
    return {"id": todo_id, "text": f"todo {todo_id}", "completed": completed, "deleted": deleted, "times_created": 1}


def rows(ids):
    return [todo(todo_id) for todo_id in sorted(ids)]


def assert_synced(store, head):
    """The server confirmed exactly ``head`` events to the store and its app state applied all of them."""
    progress = {key: store[key] for key in ("upstreamHead", "pending", "sessionHead", "sessionPending")}
    assert progress == {"upstreamHead": head, "pending": 0, "sessionHead": head, "sessionPending": 0}


def converge_workload_todos():
    """What both ``converge`` scenarios commit: per client 50 todos, every 5th completed, every 10th deleted."""
    return sorted(
        (
            todo(f"{client}-{n:02d}", completed=n % 5 == 4, deleted=n % 10 == 9)
            for client in ("client-a", "client-b", "client-c")
            for n in range(50)
        ),
        key=lambda row: row["id"],
    )


def assert_same_eventlog(stores, length):
    """Every store holds the same ``length`` events in the same order, numbered e1, e2, … without gaps."""
    eventlogs = [store["eventlog"] for store in stores]
    assert all(eventlog == eventlogs[0] for eventlog in eventlogs), eventlogs
    assert [entry.split()[0] for entry in eventlogs[0]] == [f"e{n}" for n in range(1, length + 1)]


def run_mixed_generations(old_runner, new_runner, server, store_id):
    """Two 0.3.1 clients and two 0.4.0 clients (one ws, one http) commit 20 todos each on ``store_id`` at once,
    through ``server``; every one of them must end with all 80 todos, each created once, in one eventlog."""
    total = ["--total-events", "80"]
    old = old_runner.start("mixed-generations", [server], store_id=store_id, args=total)
    new = new_runner.start("mixed", [server], store_id=store_id, args=total)
    old_stores, new_stores = old.result()["stores"], new.result()["stores"]
    everything = rows(f"{client}-{n:02d}" for client in ("v03-a", "v03-b", "v04-ws", "v04-http") for n in range(20))
    for store in old_stores + new_stores:
        assert store["todos"] == everything, store["clientId"]
        assert_synced(store, 80)
    assert_same_eventlog(new_stores, 80)
