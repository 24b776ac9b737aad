"""Batches of events as ``storage.append`` takes them, for tests that call storage directly."""

from syncapp import wire


def batch(first, last, client_id="c"):
    """Events ``first``..``last`` as one contiguous chain (no args)."""
    return [
        wire.Event(name="v1.E", seqNum=n, parentSeqNum=n - 1, clientId=client_id, sessionId="s")
        for n in range(first, last + 1)
    ]


def no_args(event):
    return None
