"""Per-socket ordering: each socket sees its store's log as one contiguous, duplicate-free run.

The channel layer may drop a broadcast, deliver one late, or deliver one whose
events the socket already got from a pull or a repair. The sequencer knows the
highest seqNum the socket's client is known to hold (``cursor``) and decides for
each broadcast whether to forward it as is, drop it, or repair the socket from
storage. It does no I/O; the consumer acts on its decisions.
"""

FORWARD = "forward"
DROP = "drop"
REPAIR = "repair"


class Sequencer:
    def __init__(self):
        # None until the client says where it stands (its first pull or push). A 0.3.1 client that reconnected
        # (to this process or another) never pulls again, so a batch forwarded before then could start past its
        # head: the client would take it and skip the events in between for good. Until the position is known,
        # broadcasts are dropped; the first pull or push then reads what the client lacks from storage.
        self.cursor = None

    def on_broadcast(self, first, last):
        """FORWARD, DROP or REPAIR for a broadcast of seqNums ``first``..``last``."""
        if self.cursor is None or last <= self.cursor:
            return DROP
        if first == self.cursor + 1:
            self.cursor = last
            return FORWARD
        return REPAIR

    def client_has(self, seq_num):
        """The client demonstrably holds every event up to ``seq_num``: its position, if it was unknown.

        A known position is not moved: the events between it and ``seq_num`` are
        the client's own earlier pushes, whose echo is still queued for this
        socket, and a LiveStore client confirms its pending events only by that
        echo. Skipping it makes the client rebase (and push again) its own events.
        """
        if self.cursor is None:
            self.cursor = seq_num

    def sent(self, seq_num):
        """Events up to ``seq_num`` were sent to the socket."""
        if self.cursor is None or seq_num > self.cursor:
            self.cursor = seq_num

    def restart(self):
        """The store was reset: its log begins again, and the next event this socket gets is its first."""
        self.cursor = 0
