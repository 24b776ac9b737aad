"""Cutting events into frames a connection can carry, and encoding them, for both protocol generations.

daphne (autobahn) refuses to send a WebSocket message over
``--websocket-max-message-size`` (1 MiB by default), and the 0.4 reference
caps its pages at 900,000 bytes. Every frame that carries events (a pull
page, a repair, a push's broadcast) is therefore cut by bytes as well as by
count: a push the server accepted can always be delivered, whatever its
events' size.
"""

import msgspec

_encoder = msgspec.json.Encoder()

# The 0.4 reference's MAX_TRANSPORT_PAYLOAD_BYTES; below daphne's default cap with room for the envelope.
MAX_PAGE_BYTES = 900_000


def encoded_runs(items, max_events=None, max_bytes=MAX_PAGE_BYTES):
    """Cut ``items`` (msgspec structs) into runs of at most ``max_events`` and about ``max_bytes`` of JSON each.

    Returns ``(count, batch)`` per run, ``batch`` being the run encoded as one
    JSON array (``msgspec.Raw``), ready to be a frame's ``batch``. A run is
    never empty unless ``items`` is (then there is one empty run, because an
    empty pull still gets one page). An item larger than ``max_bytes`` on its
    own travels alone: ``MAX_MESSAGE_BYTES`` bounds it.

    A run is encoded in one call, which costs the event loop half as much as
    encoding its items one by one (most of a long pull's CPU). Items are
    encoded one by one only from the first run whose array is over
    ``max_bytes``, and cut by their sizes from there: the cuts are the same
    either way.
    """
    step = max_events or len(items) or 1
    runs = []
    for start in range(0, len(items), step):
        run = items[start : start + step]
        encoded = _encoder.encode(run)
        # The array holds its items, a comma between each two and two brackets: _cut_by_size's measure plus 2.
        if len(encoded) - 2 > max_bytes and len(run) > 1:
            rest = [_encoder.encode(item) for item in items[start:]]
            return runs + [(len(cut), _array(cut)) for cut in _cut_by_size(rest, max_events, max_bytes)]
        runs.append((len(run), msgspec.Raw(encoded)))
    return runs or [(0, _array([]))]


def _cut_by_size(encoded_items, max_events, max_bytes):
    runs, current, size = [], [], 0
    for item in encoded_items:
        full = max_events is not None and len(current) == max_events
        if current and (full or size + len(item) > max_bytes):
            runs.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item) + 1
    runs.append(current)
    return runs


def _array(encoded_items):
    return msgspec.Raw(b"[" + b",".join(encoded_items) + b"]")
