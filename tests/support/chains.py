"""Batches of events as ``storage.append`` takes them, for tests that call storage directly, and the pushes a
fast path (one statement, or one transaction on the event loop) must leave to the general path."""

import pytest

from syncapp.protocol import wire


def batch(first, last, client_id="c"):
    """Events ``first``..``last`` as one contiguous chain (no args)."""
    return [
        wire.Event(name="v1.E", seqNum=n, parentSeqNum=n - 1, clientId=client_id, sessionId="s")
        for n in range(first, last + 1)
    ]


def no_args(event):
    return None


async def push_what_the_fast_path_cannot_take(store_id):
    """Push a stale parent, a retry of stored events and a broken chain to ``store_id`` (head 3) through
    ``eventlog.commit``: each is decided as the general path decides it, and the retry stores e4."""
    from syncapp import storage
    from syncapp.core import eventlog

    with pytest.raises(storage.ParentMismatch):
        await eventlog.commit(store_id, batch(2, 2, "stale"))
    retried = await eventlog.commit(store_id, [*batch(3, 3), *batch(4, 4, "new")])
    assert retried.already_stored == 1
    broken = batch(5, 6)
    broken[1] = wire.Event(name="v1.E", seqNum=9, parentSeqNum=5, clientId="c", sessionId="s")
    with pytest.raises(storage.BrokenChain):
        await eventlog.commit(store_id, broken)
