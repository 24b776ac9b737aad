"""Access taken away reaches open sockets: each re-runs its validator on a timer, on notice, and at its expiry.

A WebSocket accepted through a validator (``VALIDATE_PAYLOAD``, or its mount's) keeps a ``Guard`` that re-runs
the validator on the socket's context, with its user read again (from the session, so a logout, a password
change or a deactivation shows; else from the database):

- every ``REVALIDATE_INTERVAL`` seconds (±20 %; the first check comes after half to one interval, so sockets
  opened together do not check together): the net under every change, whoever made it (a queryset ``update``,
  raw SQL, another project's code);
- within a fraction of a second of a notice naming the socket's user: the signal receivers below send one, in
  this process at once and, when the channel layer is Redis, to every process over a pub/sub channel on the
  layer's first host (NOTICE_CHANNEL), when a ``StoreAccess`` row is saved or deleted, a user is saved (except
  for a login's ``last_login``) or deleted, a user joins or leaves a group; a notice about a group's row rechecks
  every socket with a user, spread over NOTICE_SPREAD_SECONDS;
- at once when its session logs out (``user_logged_out``): the socket is closed without asking the validator;
- at the context's ``expires_at`` (``validate_token`` sets it to the token's expiry).

A validator that now refuses closes the socket with 4403 (``websocket.CLOSE_ACCESS_REVOKED``; daphne cannot
send 1008). LiveStore's clients reconnect after any close code: 0.3.1 (``makeCfSync``) opens a new socket at
once and retries a refused handshake after 100 ms, then twice as long each time; 0.4.0 (``makeWsSync``) retries
after 1 s, then twice as long each time up to about 30 s, jittered. The reconnection is then refused at the
handshake, as any. A validator that now answers ``READ_ONLY`` makes the socket read-only (its pushes are
refused, its pulls go on), and one that answers None makes a read-only socket writable again. A validator that
fails with a database error keeps the socket as it is, and the next check tries again: a database outage closes
nothing.

A check costs one trip to a thread of the default executor that reads the session and the user again (two
indexed queries for a session's user) and runs a synchronous validator (``syncapp.access.user_access``: two
more), then closes the thread's connections as a request's end would. With N sockets a process runs about
N / REVALIDATE_INTERVAL checks per second; a socket waiting for its next check costs one sleeping task.
"""

import asyncio
import collections
import contextlib
import contextvars
import functools
import hashlib
import inspect
import json
import logging
import random
import threading
import time
import uuid
import weakref
from collections.abc import Iterable
from importlib import import_module
from typing import TYPE_CHECKING, Any, Final

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_out
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from .. import conf
from ..context import READ_ONLY
from ..fanout import layer_redis
from . import limits

if TYPE_CHECKING:
    from ..context import SyncContext
    from .websocket import StoreSocketConsumer

logger = logging.getLogger("syncapp")

NOTICE_CHANNEL: Final = "livesync:revocations"
# A notice about every user (a group's row changed) spreads their checks over this long.
NOTICE_SPREAD_SECONDS = 1.0
# A notice about one user waits this long at most before its check (a password change rewrites the session that
# made it just after the user is saved).
NOTICE_DELAY_SECONDS = 0.2
# Notices this process remembers, so that one heard both locally and through Redis is handled once.
REMEMBERED_NOTICES = 1000


def session_digest(session_key: str | None) -> str | None:
    """What notices name a session by (not its key, a secret)."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:32] if session_key else None


class Guard:
    """One WebSocket's watch over its access; ``stop()`` when the socket leaves."""

    def __init__(self, socket: "StoreSocketConsumer", context: "SyncContext") -> None:
        self.socket = socket
        self.loop = asyncio.get_running_loop()
        user = context.user
        self.user_id = str(user.pk) if user.is_authenticated else None
        session = (context.scope or {}).get("session")
        self.session = session_digest(getattr(session, "session_key", None)) if session is not None else None
        self._wake = asyncio.Event()
        self._delay = 0.0
        self._revoke: str | None = None
        self.task = self.loop.create_task(self._run(), context=contextvars.copy_context())

    def notice(self, delay: float, revoke: str | None = None) -> None:
        """Check soon (within ``delay`` seconds), or close the socket (``revoke``: why); on the socket's loop."""
        if revoke is not None:
            self._revoke = revoke
        self._delay = max(self._delay, delay) if self._wake.is_set() else delay
        self._wake.set()

    def stop(self) -> None:
        _unregister(self)
        self.task.cancel()

    async def _run(self) -> None:
        interval = conf.get("REVALIDATE_INTERVAL")
        wait = None if interval is None else interval * random.uniform(0.5, 1.0)  # noqa: S311 - jitter
        while True:
            expires_at = self.socket.context.expires_at
            timeout = wait
            if expires_at is not None:
                until_expiry = max(0.0, expires_at - time.time()) + 0.01
                timeout = until_expiry if timeout is None else min(timeout, until_expiry)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            if self._wake.is_set():
                self._wake.clear()
                if self._revoke is None and self._delay:
                    await asyncio.sleep(random.uniform(0, self._delay))  # noqa: S311 - jitter
            if self._revoke is not None:
                self.socket.revoke(self._revoke)
                return
            if not await self.check():
                return
            wait = None if interval is None else interval * random.uniform(0.8, 1.2)  # noqa: S311 - jitter

    async def check(self) -> bool:
        """Run the validator again; False once the socket is closed for it."""
        socket = self.socket
        context = socket.context
        if socket.closing or context is None:
            return False
        validator = validator_of(socket.validate_payload)
        if validator is None:
            return True
        try:
            if inspect.iscoroutinefunction(validator):
                context.user = await sync_to_async(_current_user, thread_sensitive=False)(context)
                verdict = await validator(context.payload, context)
            else:
                verdict = await sync_to_async(_validate, thread_sensitive=False)(validator, context)
        except DatabaseError:
            logger.warning(
                "could not re-check a socket of store %r (database error): checked again later",
                context.store_id,
                exc_info=True,
            )
            return True
        except Exception as exc:  # noqa: BLE001 - the validator refuses by raising anything
            socket.revoke(f"its validator refuses it now: {exc}")
            return False
        read_only = verdict == READ_ONLY
        if read_only != context.read_only:
            context.read_only = read_only
            logger.info(
                "a socket of store %r is %s now", context.store_id, "read-only" if read_only else "writable again"
            )
        return True


def validator_of(override: Any) -> Any:
    """The validator a socket was accepted through (its mount's, else VALIDATE_PAYLOAD), as written, or None."""
    target = override if override is not None else conf.get("VALIDATE_PAYLOAD")
    return _imported(target) if isinstance(target, str) else target


@functools.cache
def _imported(path: str) -> Any:
    return import_string(path)


def _validate(validator: Any, context: "SyncContext") -> Any:
    """A synchronous validator's verdict on the context with its user read again, in one trip to a thread, whose
    database connections are then closed as at the end of a request (per CONN_MAX_AGE)."""
    try:
        context.user = current_user(context.scope, context.user)
        return validator(context.payload, context)
    finally:
        close_old_connections()


def _current_user(context: "SyncContext") -> Any:
    try:
        return current_user(context.scope, context.user)
    finally:
        close_old_connections()


def current_user(scope: dict[str, Any] | None, user: Any) -> Any:
    """The connection's user as it is now: its session's (read again, verified as Django verifies it, without
    changing the session), else ``user`` read again from the database; AnonymousUser once there is none."""
    scope = scope or {}
    session = scope.get("session")
    if session is not None and session.session_key and session.get(SESSION_KEY) is not None:
        fresh = import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
        try:
            user_id = get_user_model()._meta.pk.to_python(fresh[SESSION_KEY])
            backend_path = fresh[BACKEND_SESSION_KEY]
        except KeyError:
            return AnonymousUser()
        if backend_path not in settings.AUTHENTICATION_BACKENDS:
            return AnonymousUser()
        found = load_backend(backend_path).get_user(user_id)
        if found is not None and hasattr(found, "get_session_auth_hash"):
            session_hash = fresh.get(HASH_SESSION_KEY)
            verified = bool(session_hash) and (
                constant_time_compare(session_hash, found.get_session_auth_hash())
                or any(constant_time_compare(session_hash, fallback) for fallback in _fallback_hashes(found))
            )
            if not verified:
                found = None
        return found or AnonymousUser()
    if getattr(user, "is_authenticated", False) and getattr(user, "pk", None) is not None:
        model = type(user)
        manager = getattr(model, "_default_manager", None)
        if manager is None:
            return user
        return manager.filter(pk=user.pk).first() or AnonymousUser()
    return user


def _fallback_hashes(user: Any) -> Iterable[str]:
    hashes = getattr(user, "get_session_auth_fallback_hash", None)
    return hashes() if hashes is not None else ()


def _forget_imports(*, setting: str, **kwargs: Any) -> None:
    if setting == "LIVESYNC":
        _imported.cache_clear()


setting_changed.connect(_forget_imports)


# The guards of this process, by user.

_lock = threading.Lock()
_guards: set[Guard] = set()
_by_user: dict[str, set[Guard]] = {}
_by_session: dict[str, set[Guard]] = {}
# Guards per event loop: the loop's notice listener stops with its last guard (a count, not a scan per close).
_per_loop: collections.Counter[Any] = collections.Counter()


def watch(socket: "StoreSocketConsumer") -> Guard | None:
    """Start re-checking an accepted socket, if a validator accepted it; its Guard, or None."""
    context = socket.context
    if context is None or validator_of(socket.validate_payload) is None:
        return None
    guard = Guard(socket, context)
    with _lock:
        _guards.add(guard)
        _per_loop[guard.loop] += 1
        if guard.user_id is not None:
            _by_user.setdefault(guard.user_id, set()).add(guard)
        if guard.session is not None:
            _by_session.setdefault(guard.session, set()).add(guard)
    if limits.current().shared:
        _listen(guard.loop)
    return guard


def _unregister(guard: Guard) -> None:
    with _lock:
        if guard in _guards:
            _guards.discard(guard)
            _per_loop[guard.loop] -= 1
        for index, key in ((_by_user, guard.user_id), (_by_session, guard.session)):
            if key is not None and key in index:
                index[key].discard(guard)
                if not index[key]:
                    del index[key]
        remaining = _per_loop[guard.loop] > 0
        if not remaining:
            del _per_loop[guard.loop]
    if not remaining:
        _stop_listening(guard.loop)


# Notices: {"id", "users": [user ids] | "all": true | "sessions": [session digests]}.

_seen: collections.OrderedDict[str, None] = collections.OrderedDict()


def _deliver(notice: dict[str, Any]) -> None:
    """Hand a notice to this process's guards (from any thread)."""
    notice_id = notice.get("id")
    with _lock:
        if notice_id is not None:
            if notice_id in _seen:
                return
            _seen[notice_id] = None
            while len(_seen) > REMEMBERED_NOTICES:
                _seen.popitem(last=False)
        targets: list[tuple[Guard, float, str | None]] = []
        for digest in notice.get("sessions", ()):
            targets += [(guard, 0.0, "its session logged out") for guard in _by_session.get(digest, ())]
        if notice.get("all"):
            targets += [(guard, NOTICE_SPREAD_SECONDS, None) for guard in _guards if guard.user_id is not None]
        for user_id in notice.get("users", ()):
            targets += [(guard, NOTICE_DELAY_SECONDS, None) for guard in _by_user.get(str(user_id), ())]
    for guard, delay, revoke in targets:
        with contextlib.suppress(RuntimeError):  # its loop is closed: the socket is gone
            guard.loop.call_soon_threadsafe(guard.notice, delay, revoke)


def notify(
    *, users: Iterable[Any] = (), everyone: bool = False, sessions: Iterable[str] = (), using: str = DEFAULT_DB_ALIAS
) -> None:
    """Tell every process's sockets that these users' access changed (once the transaction commits)."""
    notice: dict[str, Any] = {"id": uuid.uuid4().hex}
    if everyone:
        notice["all"] = True
    user_ids = [str(user_id) for user_id in users if user_id is not None]
    if user_ids:
        notice["users"] = user_ids
    digests = [digest for digest in sessions if digest]
    if digests:
        notice["sessions"] = digests
    if len(notice) == 1:
        return
    transaction.on_commit(lambda: _send(notice), using=using)


_publishing: set["asyncio.Future[None]"] = set()


def _send(notice: dict[str, Any]) -> None:
    _deliver(notice)
    if not limits.current().shared:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # Sent from a thread running an event loop (Django forbids that for the ORM, but a project may): publish
        # on it, without waiting.
        task = asyncio.ensure_future(_publish(notice))
        _publishing.add(task)
        task.add_done_callback(_publishing.discard)
        return
    try:
        async_to_sync(_publish)(notice)
    except Exception:  # noqa: BLE001 - the sockets of other processes see the change at their next check
        logger.warning(
            "could not publish a revocation notice through Redis: other processes' sockets see it within "
            "REVALIDATE_INTERVAL",
            exc_info=True,
        )


async def _publish(notice: dict[str, Any]) -> None:
    """Publish on a connection of its own: this may be a loop of its own (``async_to_sync`` outside a server)."""
    from channels_redis.utils import create_pool
    from redis import asyncio as aioredis

    client = aioredis.Redis(connection_pool=create_pool(layer_redis.hosts()[0]))
    try:
        async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
            await client.publish(NOTICE_CHANNEL, json.dumps(notice))
    finally:
        await client.aclose(close_connection_pool=True)


# Each event loop with guards listens to the notices of other processes.

_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, "asyncio.Task[None]"] = weakref.WeakKeyDictionary()


def _listen(loop: asyncio.AbstractEventLoop) -> None:
    task = _listeners.get(loop)
    if task is None or task.done():
        _listeners[loop] = loop.create_task(_listen_loop(), context=contextvars.Context())


def _stop_listening(loop: asyncio.AbstractEventLoop) -> None:
    task = _listeners.pop(loop, None)
    if task is not None:
        task.cancel()


async def _listen_loop() -> None:
    """Subscribe to NOTICE_CHANNEL and deliver what comes; after an outage, re-check every socket of this loop
    (notices may have been lost meanwhile)."""
    failed = False
    while True:
        pubsub = layer_redis.client(0).pubsub(ignore_subscribe_messages=True)
        try:
            async with asyncio.timeout(layer_redis.TIMEOUT_SECONDS):
                await pubsub.subscribe(NOTICE_CHANNEL)
            if failed:
                failed = False
                logger.warning("revocation notices heard through Redis again")
                _deliver({"all": True})
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None and message.get("type") == "message":
                    try:
                        _deliver(json.loads(message["data"]))
                    except (ValueError, TypeError, AttributeError):
                        logger.warning("ignored a malformed revocation notice")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Redis down: the timer re-checks meanwhile
            if not failed:
                logger.warning("revocation notices not heard through Redis (%s): sockets re-check on their timer", exc)
            failed = True
            await asyncio.sleep(1)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), 1)


# What sends notices.


def _access_changed(sender: Any, instance: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    if instance.user_id is not None:
        notify(users=[instance.user_id], using=using)
    else:
        notify(everyone=True, using=using)


def _user_changed(sender: Any, instance: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return
    notify(users=[instance.pk], using=using)


def _groups_changed(
    sender: Any, instance: Any, action: str, model: Any, pk_set: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    if isinstance(instance, user_model) and model is Group:
        notify(users=[instance.pk], using=using)
    elif isinstance(instance, Group) and model is user_model:
        notify(users=pk_set or (), everyone=pk_set is None, using=using)


def _logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    notify(sessions=[session_digest(getattr(session, "session_key", None)) or ""])


post_save.connect(_access_changed, sender="syncapp.StoreAccess", dispatch_uid="livesync-revocation-access-saved")
post_delete.connect(_access_changed, sender="syncapp.StoreAccess", dispatch_uid="livesync-revocation-access-deleted")
post_save.connect(_user_changed, sender=settings.AUTH_USER_MODEL, dispatch_uid="livesync-revocation-user-saved")
post_delete.connect(_user_changed, sender=settings.AUTH_USER_MODEL, dispatch_uid="livesync-revocation-user-deleted")
m2m_changed.connect(_groups_changed, dispatch_uid="livesync-revocation-groups")
user_logged_out.connect(_logged_out, dispatch_uid="livesync-revocation-logout")
