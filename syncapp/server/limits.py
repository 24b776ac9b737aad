"""Per-client limits: pushes and events per second and open connections, whatever connections a client spreads them
over, and connections per address.

A *client* is who a connection acts for (``client_of``): the session's user, else the subject its validator set on
the context (``syncapp.tokens.validate_token`` sets a token's ``subject``), else its address. Its pushes over every
WebSocket and every 0.4 HTTP request count together (``SyncContext.push_refusal`` asks ``push_refusal`` here for
each of them), and so do its open WebSockets. An *address* is the peer's IP address, or with
``CLIENT_ADDRESS_HEADER`` the last address in that header (set by a proxy in front of every request).

Rates are counted over a sliding second (the previous second's count, weighted by how much of it is still within the
last second, plus the current one's): a client flooding at any pace gets ``limit`` pushes through per second. Each
process decides a push at once, from what it counted itself and what it last heard of the other processes: when the
channel layer is Redis, a task per process adds its counts to Redis and reads the others' every SHARE_SECONDS,
one pipeline for every client active meanwhile, never a round trip per push. Processes that start flooding at the
same instant may each let ``limit`` through in the first SHARE_SECONDS; after that the sum holds. With Redis
unreachable each process goes on counting alone.

Connections are counted as they open and close: in this process, and in Redis (one Lua call that checks the caps
and counts the connection, on the layer's first host) when the layer is Redis. Each process's counts carry its
liveness key, refreshed every HEARTBEAT_SECONDS: a process that dies stops being counted within ALIVE_SECONDS.
"""

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import time
import uuid
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from cachetools import LRUCache
from django.core.signals import setting_changed

from .. import conf
from ..fanout import layer_redis

if TYPE_CHECKING:
    from ..context import SyncContext

logger = logging.getLogger("syncapp")

# How often each process shares its clients' push counts through Redis.
SHARE_SECONDS = 0.1
# How often each process refreshes its connection counts and its liveness in Redis, and how long they outlive it.
HEARTBEAT_SECONDS = 5
ALIVE_SECONDS = 15
# Clients whose recent pushes each process remembers (the ones that pushed last).
MAX_CLIENTS = 100_000

RATE_PREFIX = "livesync:rate:"
CONNECTIONS_PREFIX = "livesync:connections:"
ALIVE_PREFIX = "livesync:alive:"

# What a client is, for the refusal texts.
USER: Final = "user"
SUBJECT: Final = "subject"
ADDRESS: Final = "address"
_WHOSE = {USER: "for this user", SUBJECT: "for this token's subject", ADDRESS: "from this address"}


@dataclass(frozen=True)
class Limits:
    pushes: float | None
    events: float | None
    client_connections: int | None
    address_connections: int | None
    address_header: str | None
    shared: bool
    # Whether a per-client rate is set (asked for every push).
    rates: bool


@lru_cache(maxsize=1)
def current() -> Limits:
    """The limits in force (computed again when LIVESYNC changes)."""
    header = conf.get("CLIENT_ADDRESS_HEADER")
    pushes, events = conf.get("MAX_PUSHES_PER_SECOND_PER_CLIENT"), conf.get("MAX_EVENTS_PER_SECOND_PER_CLIENT")
    return Limits(
        pushes=pushes,
        events=events,
        client_connections=conf.get("MAX_CONNECTIONS_PER_CLIENT"),
        address_connections=conf.get("MAX_CONNECTIONS_PER_ADDRESS"),
        address_header=header.lower() if header else None,
        shared=layer_redis.is_redis() and layer_redis.installed(),
        rates=pushes is not None or events is not None,
    )


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in ("LIVESYNC", "CHANNEL_LAYERS"):
        current.cache_clear()
        reset()


setting_changed.connect(_reset)


# Who a connection is.


def client_address(scope: dict[str, Any] | None, limits: Limits | None = None) -> str | None:
    """The client's IP address: the last address of CLIENT_ADDRESS_HEADER if set (and sent), else the peer's."""
    scope = scope or {}
    header = (limits or current()).address_header
    if header is not None:
        wanted = header.encode("latin-1")
        for name, value in scope.get("headers", ()):
            if name.lower() == wanted:
                last = value.decode("latin-1").rsplit(",", 1)[-1].strip()
                if last:
                    return last
    client = scope.get("client")
    return str(client[0]) if client else None


def client_of(context: "SyncContext") -> tuple[str, str]:
    """``(kind, identity)`` of whom the connection acts for: its user, else its subject, else its address."""
    user = context.user
    if getattr(user, "is_authenticated", False):
        return USER, str(user.pk)
    if context.subject:
        return SUBJECT, str(context.subject)
    return ADDRESS, client_address(context.scope) or "unknown"


def _redis_key(prefix: str, kind: str, identity: str) -> str:
    if len(identity) > 100:
        identity = hashlib.sha256(identity.encode()).hexdigest()
    return f"{prefix}{kind}:{identity}"


# Rates.


class _Second:
    """One second of a client's pushes: counted here, written to Redis so far, and the other processes'."""

    __slots__ = ("events", "other_events", "other_pushes", "pushes", "sent_events", "sent_pushes")

    def __init__(self) -> None:
        self.pushes = self.events = 0
        self.sent_pushes = self.sent_events = 0
        self.other_pushes = self.other_events = 0


class _Client:
    __slots__ = ("key", "kind", "seconds")

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        # The current second and the one before (Unix time, so that processes agree on them).
        self.seconds: dict[int, _Second] = {}

    def at(self, second: int) -> _Second:
        slot = self.seconds.get(second)
        if slot is None:
            slot = self.seconds[second] = _Second()
            for old in [s for s in self.seconds if s < second - 1]:
                del self.seconds[old]
        return slot


_clients: LRUCache[tuple[str, str], _Client] = LRUCache(MAX_CLIENTS)


def push_refusal(context: "SyncContext", event_count: int, limits: Limits) -> str | None:
    """Why the client of ``context`` may not push ``event_count`` events now, or None (and then they count)."""
    client = context._rates
    if client is None:
        # Once per connection: its sockets' later pushes find their client's counts without a lookup.
        who = context._client
        if who is None:
            who = context._client = client_of(context)
        client = _clients.get(who)
        if client is None:
            client = _clients[who] = _Client(who[0], _redis_key(RATE_PREFIX, *who))
        context._rates = client
    now = time.time()
    second = int(now)
    current_second = client.at(second)
    previous = client.seconds.get(second - 1)
    # The share of the previous second still within the last second.
    weight = 1.0 - (now - second)
    refusal = None
    if limits.pushes is not None:
        pushes = current_second.pushes + current_second.other_pushes
        if previous is not None:
            pushes += (previous.pushes + previous.other_pushes) * weight
        if pushes + 1 > limits.pushes:
            refusal = f"Push refused: more than {limits.pushes:g} pushes per second {_WHOSE[client.kind]}"
    if refusal is None and limits.events is not None:
        events = current_second.events + current_second.other_events
        if previous is not None:
            events += (previous.events + previous.other_events) * weight
        if events + event_count > limits.events:
            refusal = f"Push refused: more than {limits.events:g} events per second {_WHOSE[client.kind]}"
    if refusal is None:
        current_second.pushes += 1
        current_second.events += event_count
    if limits.shared:
        # A refused client is shared too: its counts are read again, so that it is let through once the others slow.
        _sharer().touch(client)
    return refusal


class _Sharer:
    """This event loop's task that adds its clients' counts to Redis and reads the other processes'."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.touched: dict[str, _Client] = {}
        self.wake = asyncio.Event()
        self.failing = False
        self.task = loop.create_task(self._run(), context=contextvars.Context())

    def touch(self, client: _Client) -> None:
        self.touched[client.key] = client
        self.wake.set()

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(SHARE_SECONDS)
            self.wake.clear()
            clients, self.touched = list(self.touched.values()), {}
            try:
                await self._share(clients)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: each process counts alone until it returns
                if not self.failing:
                    logger.warning("could not share push counts through Redis (%s): each process counts alone", exc)
                self.failing = True
                continue
            if self.failing:
                logger.warning("push counts shared through Redis again")
            self.failing = False

    async def _share(self, clients: list[_Client]) -> None:
        now = int(time.time())
        sent = []
        pipeline = layer_redis.client(0).pipeline(transaction=False)
        for client in clients:
            for second in (now - 1, now):
                slot = client.at(second) if second == now else client.seconds.get(second)
                if slot is None:
                    continue
                pushes, events = slot.pushes - slot.sent_pushes, slot.events - slot.sent_events
                key = f"{client.key}:{second}"
                pipeline.hincrby(key, "p", pushes)
                pipeline.hincrby(key, "e", events)
                pipeline.expire(key, 3)
                sent.append((slot, pushes, events))
        if not sent:
            return
        async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
            answers = await pipeline.execute()
        for index, (slot, pushes, events) in enumerate(sent):
            slot.sent_pushes += pushes
            slot.sent_events += events
            slot.other_pushes = max(0, int(answers[3 * index]) - slot.sent_pushes)
            slot.other_events = max(0, int(answers[3 * index + 1]) - slot.sent_events)


_sharers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sharer] = weakref.WeakKeyDictionary()


def _sharer() -> _Sharer:
    loop = asyncio.get_running_loop()
    sharer = _sharers.get(loop)
    if sharer is None or sharer.task.done():
        sharer = _sharers[loop] = _Sharer(loop)
    return sharer


# Connections.


class TooManyConnections(Exception):
    """A connection past MAX_CONNECTIONS_PER_ADDRESS or MAX_CONNECTIONS_PER_CLIENT; the message says which."""


# Open connections per key in this process (every event loop's).
_open: dict[str, int] = {}

# Checks the caps against every live process's count and counts the connection, or answers which cap it would pass.
# KEYS: the hashes (process -> open connections) of the address and/or client; ARGV: this process, the prefix of
# the liveness keys, the hashes' time to live, then each key's cap.
_TAKE = """
for i, key in ipairs(KEYS) do
  local total = 0
  local counts = redis.call('HGETALL', key)
  for j = 1, #counts, 2 do
    local process = counts[j]
    if process == ARGV[1] or redis.call('EXISTS', ARGV[2] .. process) == 1 then
      total = total + tonumber(counts[j + 1])
    else
      redis.call('HDEL', key, process)
    end
  end
  if total >= tonumber(ARGV[3 + i]) then
    return i
  end
end
for i, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, ARGV[1], 1)
  redis.call('EXPIRE', key, ARGV[3])
end
return 0
"""


class _Process:
    """This event loop's identity in Redis and its heartbeat, while it has connections counted there."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.id = uuid.uuid4().hex
        self.keys: dict[str, int] = {}
        self.failing = False
        # Until when (time.monotonic()) Redis holds this process's liveness key, as far as it knows.
        self.alive_until = 0.0
        self.task: asyncio.Task[None] | None = None
        self.loop = loop

    def ensure_heartbeat(self) -> None:
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._heartbeat(), context=contextvars.Context())

    async def _heartbeat(self) -> None:
        while self.keys:
            with contextlib.suppress(Exception):
                await self.beat()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def beat(self) -> None:
        """Say this process is alive, and what it holds (its own counts are the truth for its fields)."""
        pipeline = layer_redis.client(0).pipeline(transaction=False)
        pipeline.set(ALIVE_PREFIX + self.id, 1, ex=ALIVE_SECONDS)
        for key, count in list(self.keys.items()):
            pipeline.hset(key, self.id, count)
            pipeline.expire(key, ALIVE_SECONDS)
        written = time.monotonic()
        async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
            await pipeline.execute()
        self.alive_until = written + ALIVE_SECONDS


_processes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Process] = weakref.WeakKeyDictionary()


def _process() -> _Process:
    loop = asyncio.get_running_loop()
    process = _processes.get(loop)
    if process is None:
        process = _processes[loop] = _Process(loop)
    return process


class ConnectionSlots:
    """The connection counts one WebSocket holds (its address's, its client's), released when it closes."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.shared: list[str] = []

    async def take_address(self, scope: dict[str, Any] | None) -> None:
        """Count the connection against MAX_CONNECTIONS_PER_ADDRESS, or raise TooManyConnections."""
        limits = current()
        cap = limits.address_connections
        if cap is None:
            return
        address = client_address(scope, limits) or "unknown"
        await self._take(_redis_key(CONNECTIONS_PREFIX, ADDRESS, address), cap, limits)

    async def take_client(self, context: "SyncContext") -> None:
        """Count the connection against MAX_CONNECTIONS_PER_CLIENT, or raise TooManyConnections."""
        limits = current()
        cap = limits.client_connections
        if cap is None:
            return
        who = context._client
        if who is None:
            who = context._client = client_of(context)
        await self._take(_redis_key(CONNECTIONS_PREFIX, "client-" + who[0], who[1]), cap, limits, who[0])

    async def _take(self, key: str, cap: int, limits: Limits, kind: str | None = None) -> None:
        shared = False
        if limits.shared:
            process = _process()
            try:
                if time.monotonic() > process.alive_until - HEARTBEAT_SECONDS:
                    # Others drop the counts of a process whose liveness key is gone.
                    await process.beat()
                async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
                    refused = await layer_redis.client(0).eval(
                        _TAKE, 1, key, process.id, ALIVE_PREFIX, ALIVE_SECONDS, cap
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: this process's own count decides
                if not process.failing:
                    logger.warning("could not count connections in Redis (%s): each process counts its own", exc)
                process.failing = True
                refused = _open.get(key, 0) >= cap
            else:
                process.failing = False
                shared = not refused
            if refused:
                raise TooManyConnections(_connections_text(cap, kind))
        elif _open.get(key, 0) >= cap:
            raise TooManyConnections(_connections_text(cap, kind))
        _open[key] = _open.get(key, 0) + 1
        self.keys.append(key)
        if shared:
            self.shared.append(key)
            process.keys[key] = process.keys.get(key, 0) + 1
            process.ensure_heartbeat()

    async def release(self) -> None:
        """Stop counting this connection (once; safe to call again)."""
        keys, self.keys = self.keys, []
        shared, self.shared = self.shared, []
        for key in keys:
            left = _open.get(key, 0) - 1
            if left > 0:
                _open[key] = left
            else:
                _open.pop(key, None)
        if not shared:
            return
        process = _process()
        for key in shared:
            left = process.keys.get(key, 0) - 1
            if left > 0:
                process.keys[key] = left
            else:
                process.keys.pop(key, None)
        try:
            pipeline = layer_redis.client(0).pipeline(transaction=False)
            for key in shared:
                pipeline.hincrby(key, process.id, -1)
            async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
                await pipeline.execute()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the heartbeat writes this process's true counts again
            logger.debug("could not uncount a connection in Redis", exc_info=True)


def _connections_text(cap: int, kind: str | None) -> str:
    if kind is None:
        return f"Too many connections: {cap} already open from this address (MAX_CONNECTIONS_PER_ADDRESS)"
    return f"Too many connections: {cap} already open {_WHOSE[kind]} (MAX_CONNECTIONS_PER_CLIENT)"


def reset() -> None:
    """Forget every count of this process (tests; a changed setting)."""
    _clients.clear()
