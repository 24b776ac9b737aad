"""How far behind its timers an event loop runs, so that a bounded wait does not blame Redis for the loop's
own stalls.

An answer from Redis is read by the event loop. A loop that is busy for longer than a wait's bound (a burst of
20,000 new stores, a callback that blocks) expires ``asyncio.timeout`` although the answer came at once: the
hub then took a healthy Redis for an unreachable one, logged an outage and counted it. ``timeout`` bounds a
wait by the time the loop was there to read the answer: each event loop that uses it runs a ``Clock``, a timer
every TICK_SECONDS that notes how late it fired, and the time the loop ran late is added to the bound.

In a loop that runs on time a silent Redis still fails the wait after its bound; in a busy one, later by as
much as the loop was busy. ``livesync_event_loop_behind_seconds_total`` says how much that was.
"""

import asyncio
import weakref

# How often a clock looks at its loop. Up to this much of each stall goes unnoticed (the time from a tick to a
# callback that blocks), so it is short: a bound of 10 s then outlasts 400 turns of a loop blocked at every turn.
# Its cost is about 0.2 % of a core.
TICK_SECONDS = 0.025

_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, "Clock"] = weakref.WeakKeyDictionary()


class Clock:
    """Seconds one event loop ran behind its timers since the clock started.

    The clock's timer holds the loop, not the clock: a loop that is closed and dropped takes its clock along.
    """

    def __init__(self, loop):
        # Not at the module's import: syncapp.fanout.layer_redis imports this module, and needs no settings to import.
        from ..metrics import EVENT_LOOP_BEHIND

        self._counter = EVENT_LOOP_BEHIND
        self._behind = 0.0
        self._due = loop.time() + TICK_SECONDS
        loop.call_at(self._due, self._tick, loop)

    def behind(self, now):
        """Seconds behind until ``now`` (the loop's time), counting a tick that is overdue now."""
        return self._behind + max(0.0, now - self._due)

    def _tick(self, loop):
        now = loop.time()
        late = max(0.0, now - self._due)
        self._behind += late
        self._counter.inc(late)
        self._due = now + TICK_SECONDS
        loop.call_at(self._due, self._tick, loop)


def clock():
    """The running loop's clock, started on first use."""
    loop = asyncio.get_running_loop()
    found = _clocks.get(loop)
    if found is None:
        found = _clocks[loop] = Clock(loop)
    return found


def timeout(seconds):
    """``asyncio.timeout(seconds)``, except that time the event loop ran behind does not count (None: no bound)."""
    return asyncio.timeout(None) if seconds is None else _LoopTimeout(seconds)


class _LoopTimeout:
    def __init__(self, seconds):
        self._seconds = seconds
        self._timeout = asyncio.timeout(None)

    async def __aenter__(self):
        loop = asyncio.get_running_loop()
        self._clock = clock()
        self._started = loop.time()
        self._behind_at_start = self._clock.behind(self._started)
        await self._timeout.__aenter__()
        self._check = loop.call_at(self._started + self._seconds, self._expire_unless_behind, loop)
        return self

    async def __aexit__(self, exc_type, exc, traceback):
        self._check.cancel()
        return await self._timeout.__aexit__(exc_type, exc, traceback)

    def _expire_unless_behind(self, loop):
        now = loop.time()
        due = self._started + self._seconds + self._clock.behind(now) - self._behind_at_start
        if due <= now:
            self._timeout.reschedule(due)
        else:
            self._check = loop.call_at(due, self._expire_unless_behind, loop)
