"""Cutting encoded events into frames a connection can carry, for both protocol generations.

daphne (autobahn) refuses to send a WebSocket message over
``--websocket-max-message-size`` (1 MiB by default), and the 0.4 reference
caps its pages at 900,000 bytes. Every frame that carries events (a pull
page, a repair, a push's broadcast) is therefore cut by bytes as well as by
count: a push the server accepted can always be delivered, whatever its
events' size.
"""

# The 0.4 reference's MAX_TRANSPORT_PAYLOAD_BYTES; below daphne's default cap with room for the envelope.
MAX_PAGE_BYTES = 900_000


def split(items, max_events=None, max_bytes=MAX_PAGE_BYTES):
    """Cut encoded items (bytes-like) into runs of at most ``max_events`` and about ``max_bytes`` each.

    A run is never empty unless ``items`` is (then there is one empty run,
    because an empty pull still gets one page). An item larger than
    ``max_bytes`` on its own travels alone: ``MAX_MESSAGE_BYTES`` bounds it.
    """
    runs, current, size = [], [], 0
    for item in items:
        full = max_events is not None and len(current) == max_events
        if current and (full or size + len(item) > max_bytes):
            runs.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item) + 1
    if current or not runs:
        runs.append(current)
    return runs
