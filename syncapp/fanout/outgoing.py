"""Store messages waiting to go out through the channel layer, taken in batches: the hub's send loop publishes
each batch in one Redis pipeline per host (``syncapp.fanout.publisher``).
"""

import asyncio

from . import messages

# Store messages waiting to go out through the channel layer, per process.
OUTGOING_LIMIT = 10_000
# Store messages sent together at most (one Redis pipeline on the pub/sub layer; see syncapp.fanout.publisher), and
# the frames' bytes past which no more join them: a batch stays well inside Redis's output buffer for each
# subscriber (32 MB by default) and its time bound.
PUBLISH_BATCH = 100
PUBLISH_BATCH_BYTES = 1_000_000


class Outgoing:
    """A process's store messages in the order they are to be sent, up to OUTGOING_LIMIT."""

    def __init__(self):
        self._queue = asyncio.Queue()
        # A reset taken from the queue behind other messages, sent in the batch after theirs.
        self._reset_next = None

    def put(self, message):
        self._queue.put_nowait(message)

    def full(self):
        return self._queue.qsize() >= OUTGOING_LIMIT

    def empty(self):
        return self._reset_next is None and self._queue.empty()

    async def next_batch(self):
        """The next message and those waiting behind it, up to PUBLISH_BATCH messages or PUBLISH_BATCH_BYTES of
        frames, and never a reset among others: one taken behind others waits for the next batch."""
        first, self._reset_next = self._reset_next or await self._queue.get(), None
        batch, size = [first], frame_bytes(first)
        while (
            first["type"] != messages.RESET
            and len(batch) < PUBLISH_BATCH
            and size < PUBLISH_BATCH_BYTES
            and not self._queue.empty()
        ):
            message = self._queue.get_nowait()
            if message["type"] == messages.RESET:
                self._reset_next = message
                break
            batch.append(message)
            size += frame_bytes(message)
        return batch


def group_of(message):
    """The channel-layer group a hub's outgoing message goes to."""
    if message["type"] == messages.FOLLOW:
        return messages.FOLLOWS_GROUP
    return messages.group_name(message["store_id"])


def frame_bytes(message):
    """The encoded frames a store message carries, in characters (about bytes: they are mostly ASCII JSON)."""
    return sum(map(len, message.get("v03_frames", ()))) + sum(map(len, message.get("v04_pages", ())))
