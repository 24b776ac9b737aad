"""The database pool's gathering of calls (group commit's mechanism), with a plain blocking function."""

import asyncio
import threading
import time

import pytest

from syncapp.storage import db

pytestmark = pytest.mark.protocol


class Rejected(Exception):
    pass


def make_recorder(release):
    """A blocking func_many that records each call's items and holds its first call until ``release`` is set."""
    calls = []

    def func_many(items):
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(5)
        return [Rejected(item) if item < 0 else item * 10 for item in items]

    return calls, func_many


async def test_calls_made_while_one_runs_go_together_in_the_next():
    release = threading.Event()
    calls, func_many = make_recorder(release)
    gathered = db.Gathered(func_many)
    first = asyncio.ensure_future(gathered(1))
    while not calls:
        await asyncio.sleep(0.01)
    waiting = [asyncio.ensure_future(gathered(n)) for n in (2, -3, 4)]
    await asyncio.sleep(0.05)
    release.set()
    assert await first == 10
    assert await waiting[0] == 20
    with pytest.raises(Rejected):
        await waiting[1]
    assert await waiting[2] == 40
    # The first call ran alone, at once; the three that came meanwhile shared one call.
    assert calls == [[1], [2, -3, 4]]


async def test_a_failed_call_fails_every_caller_in_it():
    def broken(items):
        raise RuntimeError("database gone")

    gathered = db.Gathered(broken)
    results = await asyncio.gather(gathered(1), gathered(2), return_exceptions=True)
    assert [str(result) for result in results] == ["database gone", "database gone"]
    assert all(isinstance(result, RuntimeError) for result in results)


async def test_up_to_concurrency_calls_run_at_once_before_calls_are_gathered():
    release = threading.Event()
    started = []

    def func_many(items):
        started.append(list(items))
        release.wait(5)
        return items

    gathered = db.Gathered(func_many, concurrency=lambda: 2)
    calls = [asyncio.ensure_future(gathered(n)) for n in range(5)]
    while len(started) < 2:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    # Two ran at once, each alone (their threads may start in either order); the other three wait for one of
    # them to finish.
    assert sorted(started) == [[0], [1]]
    release.set()
    assert await asyncio.gather(*calls) == [0, 1, 2, 3, 4]
    assert started[2:] == [[2, 3, 4]]


async def test_background_work_asked_for_during_a_burst_waits_for_the_burst_to_pause():
    runs = []
    background = db.Background(lambda: runs.append(time.monotonic()), quiet_seconds=1.0, longest_wait_seconds=10)
    loop = asyncio.get_running_loop()
    for _ in range(10):
        background.request()
        await asyncio.sleep(0.05)
    last_request = loop.time()
    assert runs == []
    while not runs and loop.time() < last_request + 5:
        await asyncio.sleep(0.02)
    assert len(runs) == 1
    assert runs[0] >= last_request + 0.9


async def test_background_work_asked_for_without_pause_runs_in_full_after_the_longest_wait():
    """Once the longest wait is over, runs follow one another until none says there is more to do."""
    left = [3]

    def one_step():
        left[0] -= 1
        return left[0] > 0

    background = db.Background(one_step, quiet_seconds=0.3, longest_wait_seconds=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Each request may start a run of its own once the work is done: on a loaded machine one or two do.
    while left[0] > 0 and loop.time() < started + 5:
        background.request()
        await asyncio.sleep(0.05)
    assert left[0] <= 0, "requests that never paused kept the work from being done"
    assert loop.time() - started < 2.5
