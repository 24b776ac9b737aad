"""Fan-out: every committed push reaches every socket of its store, in every server process.

One channel-layer group per store is the Durable Object's analogue. ``hub`` keeps one subscription per
process and store and hands each message to the local sockets; ``publisher`` sends a process's messages to
their groups; ``followers`` keeps the pushes of stores no other process follows off Redis; ``presence``
counts sockets per store across processes; ``broadcast`` announces from anywhere (a command, the admin);
``messages`` names the message types and groups; ``outgoing`` queues a process's messages for the publisher;
``hosts`` watches the layer's Redis hosts (outages, restarts) and bounds each call to them; ``layer_redis``
holds redis-py clients on those hosts; ``looplag`` tells a busy event loop from an unreachable channel layer;
``handover`` brings what was committed outside the servers to their metrics.
"""
