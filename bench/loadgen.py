"""The load generator: runs one job in its own process, speaking the 0.3 protocol over raw sockets.

    python -m bench.loadgen            # reads one JSON job line on stdin

Protocol with the parent (``bench.runner``): the job comes as one JSON line on stdin. A job that holds
sockets open for the parent to measure (``idle``) prints ``READY {json}`` and waits for one line on stdin.
The last line on stdout is ``RESULT {json}`` (or ``ERROR message``). Every result says how much CPU the
load generator used while it was measuring (``loadgen_cpu_s`` over ``wall_s``); the parent adds the whole
process's CPU from ``wait4``.

Every frame sent is built by ``bench.frames`` (checked against the real client by
``python -m bench.verify_frames``).
"""

import asyncio
import json
import sys
import time
import traceback

import msgspec

from bench import frames
from bench.wsraw import connect, now


class Event(msgspec.Struct):
    seqNum: int  # noqa: N815 - protocol field name


class Item(msgspec.Struct):
    eventEncoded: Event  # noqa: N815 - protocol field name


class RequestId(msgspec.Struct):
    context: str
    requestId: str  # noqa: N815 - protocol field name


class PullRes(msgspec.Struct):
    batch: list[Item]
    requestId: RequestId  # noqa: N815 - protocol field name
    remaining: int = 0


decode_pull_res = msgspec.json.Decoder(PullRes).decode
PULL_RES_TAG = '"WSMessage.PullRes"'


class Measure:
    """Wall and CPU time of the measured part of a job."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall_s = time.perf_counter() - self.wall0
        self.cpu_s = time.process_time() - self.cpu0

    def result(self, **extra):
        return {"wall_s": self.wall_s, "loadgen_cpu_s": self.cpu_s, **extra}


def percentiles(values, points=(50, 95, 99)):
    if not values:
        return {f"p{p}": None for p in points}
    ordered = sorted(values)
    return {f"p{p}": ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] for p in points}


class ServerError(RuntimeError):
    pass


async def wait_for_reply(socket, req_id, tag='"WSMessage.PushAck"'):
    """Read frames until the one tagged ``tag`` for ``req_id``; an ``Error`` for it raises."""
    while True:
        arrived_at, text = await socket.recv()
        if req_id in text:
            if tag in text:
                return arrived_at
            if '"WSMessage.Error"' in text:
                raise ServerError(json.loads(text).get("message"))


async def open_client(url, store, on_message=None, pull=True):
    """A socket as the real client opens it: ``PullReq`` (no cursor), then ``Ping``; waits for both answers
    unless ``on_message`` consumes the frames (then the caller waits)."""
    socket = await connect(frames.store_url(url, store), on_message=on_message)
    if pull:
        req_id = frames.request_id("pull-", 0)
        socket.send(frames.pull_req(req_id))
        socket.send(frames.PING)
        if on_message is None:
            await wait_for_reply(socket, req_id, PULL_RES_TAG)
    return socket


async def push_events(socket, total, batch, first_seq=1, client_id="bench", prefix="push-"):
    """Push ``total`` todo events in batches of ``batch``, each waiting for its PushAck; ack latencies."""
    latencies = []
    number = 0
    for first in range(first_seq, first_seq + total, batch):
        count = min(batch, first_seq + total - first)
        req_id = frames.request_id(prefix, number)
        number += 1
        sent_at = now()
        socket.send(frames.todo_push(req_id, first, count, client_id=client_id, session_id=f"{client_id}-session"))
        latencies.append(await wait_for_reply(socket, req_id) - sent_at)
    return latencies


# -- jobs ------------------------------------------------------------------------------------------------


async def job_warmup(job):
    """One socket: pull, ping, a few pushes. Starts lazy parts of a fresh server before anything is timed."""
    for index, url in enumerate(job["urls"]):
        socket = await open_client(url, f"{job['store']}-{index}")
        await push_events(socket, 5, 1)
        await socket.close()
    return {"ok": True}


async def job_push(job):
    socket = await open_client(job["url"], job["store"])
    with Measure() as measure:
        latencies = await push_events(socket, job["total"], job["batch"])
    await socket.close()
    return measure.result(
        events=job["total"],
        events_per_s=job["total"] / measure.wall_s,
        ack_ms={k: v * 1000 for k, v in percentiles(latencies).items()},
    )


async def job_pull(job):
    """A fresh socket pulls the whole store: time from the PullReq to the chunk with ``remaining: 0``."""
    expected = job["expected"]
    with Measure() as measure:
        started = now()
        socket = await connect(frames.store_url(job["url"], job["store"]))
        connected = now()
        req_id = frames.request_id("pull-", 1)
        sent_at = now()
        socket.send(frames.pull_req(req_id))
        next_seq, chunks, done_at = 1, 0, None
        while done_at is None:
            arrived_at, text = await socket.recv()
            if PULL_RES_TAG not in text:
                continue
            res = decode_pull_res(text)
            if res.requestId.context != "pull" or res.requestId.requestId != req_id:
                continue
            chunks += 1
            for item in res.batch:
                if item.eventEncoded.seqNum != next_seq:
                    raise ServerError(f"pull returned e{item.eventEncoded.seqNum}, expected e{next_seq}")
                next_seq += 1
            if res.remaining == 0:
                done_at = arrived_at
    await socket.close()
    events = next_seq - 1
    if events != expected:
        raise ServerError(f"pull returned {events} events, expected {expected}")
    pull_s = done_at - sent_at
    return measure.result(
        events=events,
        chunks=chunks,
        connect_s=connected - started,
        pull_s=pull_s,
        connect_and_pull_s=done_at - started,
        events_per_s=events / pull_s,
    )


async def job_fanout(job):
    """``subscribers`` sockets on one store; one pusher sends ``pushes`` single-event pushes, one at a time,
    each after every subscriber received the previous one. Latency: push sent to broadcast received."""
    n_subs, n_pushes = job["subscribers"], job["pushes"]
    url, store = job["url"], job["store"]
    sent_at = [0.0] * n_pushes
    received = [0] * n_pushes
    latencies = []
    all_received = {}
    ready = []
    prefix = "fan-"

    def subscriber(index):
        pulled = asyncio.get_running_loop().create_future()
        ready.append(pulled)

        def on_message(arrived_at, text):
            if PULL_RES_TAG not in text:
                return
            res = decode_pull_res(text)
            rid = res.requestId
            if rid.context == "pull":
                if res.remaining == 0 and not pulled.done():
                    pulled.set_result(None)
                return
            if not rid.requestId.startswith(prefix):
                return
            number = int(rid.requestId[len(prefix) :])
            latencies.append(arrived_at - sent_at[number])
            received[number] += 1
            if received[number] == n_subs:
                waiter = all_received.get(number)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

        return on_message

    semaphore = asyncio.Semaphore(100)

    async def open_subscriber(index):
        async with semaphore:
            return await open_client(url, store, on_message=subscriber(index))

    subscribers = await asyncio.gather(*(open_subscriber(i) for i in range(n_subs)))
    await asyncio.wait_for(asyncio.gather(*ready), 60)
    pusher = await open_client(url, store)
    missing = 0
    with Measure() as measure:
        for number in range(n_pushes):
            req_id = frames.request_id(prefix, number)
            waiter = all_received[number] = asyncio.get_running_loop().create_future()
            sent_at[number] = now()
            pusher.send(frames.todo_push(req_id, number + 1, 1))
            await wait_for_reply(pusher, req_id)
            try:
                await asyncio.wait_for(waiter, 10)
            except asyncio.TimeoutError:
                missing += n_subs - received[number]
    await pusher.close()
    await asyncio.gather(*(s.close() for s in subscribers))
    return measure.result(
        subscribers=n_subs,
        pushes=n_pushes,
        samples=len(latencies),
        missing=missing,
        latency_ms={k: v * 1000 for k, v in percentiles(latencies).items()},
        max_ms=max(latencies) * 1000 if latencies else None,
    )


async def job_many(job):
    """``stores`` clients at once, each pushing ``events`` single-event pushes to its own store; clients are
    spread round-robin over ``urls``. Timed from the first connect to the last ack."""
    urls, n_stores, n_events, prefix = job["urls"], job["stores"], job["events"], job["prefix"]
    connect_times = []

    async def client(index):
        started = time.perf_counter()
        socket = await open_client(urls[index % len(urls)], f"{prefix}-{index}")
        connect_times.append(time.perf_counter() - started)
        latencies = await push_events(socket, n_events, 1, client_id=f"bench-{index}")
        await socket.close()
        return latencies

    with Measure() as measure:
        results = await asyncio.gather(*(client(i) for i in range(n_stores)))
    latencies = [latency for result in results for latency in result]
    total = n_stores * n_events
    return measure.result(
        events=total,
        events_per_s=total / measure.wall_s,
        connect_max_s=max(connect_times),
        ack_ms={k: v * 1000 for k, v in percentiles(latencies).items()},
    )


async def job_verify_counts(job):
    """Each store pulled through another URL than the one it was pushed through: exactly 1..expected."""
    urls, prefix, expected = job["urls"], job["prefix"], job["expected"]
    bad = []

    async def check(index):
        url = urls[(index + 1) % len(urls)]
        result = await job_pull({"url": url, "store": f"{prefix}-{index}", "expected": expected})
        return result["events"]

    results = await asyncio.gather(*(check(i) for i in range(job["stores"])), return_exceptions=True)
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            bad.append(f"{prefix}-{index}: {result}")
    return {"stores": job["stores"], "bad": bad, "ok": not bad}


async def job_scale_push(job):
    """One pusher on ``pusher_url``; one subscriber on each of ``sub_urls`` must receive every event once, in
    order (across processes the broadcast goes through Redis)."""
    total, batch, store = job["total"], job["batch"], job["store"]
    state = []

    def subscriber():
        entry = {"next": 1, "errors": 0, "done": asyncio.get_running_loop().create_future(), "pulled": False}
        state.append(entry)

        def on_message(arrived_at, text):
            if PULL_RES_TAG not in text:
                return
            res = decode_pull_res(text)
            if res.requestId.context == "pull" and res.remaining == 0:
                entry["pulled"] = True
            for item in res.batch:
                if item.eventEncoded.seqNum == entry["next"]:
                    entry["next"] += 1
                else:
                    entry["errors"] += 1
            if entry["next"] > total and not entry["done"].done():
                entry["done"].set_result(arrived_at)

        return on_message

    subscribers = [await open_client(url, store, on_message=subscriber()) for url in job["sub_urls"]]
    deadline = time.monotonic() + 30
    while not all(entry["pulled"] for entry in state) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    pusher = await open_client(job["pusher_url"], store)
    with Measure() as measure:
        await push_events(pusher, total, batch)
    try:
        await asyncio.wait_for(asyncio.gather(*(entry["done"] for entry in state)), 30)
    except asyncio.TimeoutError:
        pass
    await pusher.close()
    await asyncio.gather(*(s.close() for s in subscribers))
    received = [entry["next"] - 1 for entry in state]
    ok = all(r == total for r in received) and not any(entry["errors"] for entry in state)
    return measure.result(
        events=total,
        batch=batch,
        events_per_s=total / measure.wall_s,
        subscribers_received=received,
        out_of_order=sum(entry["errors"] for entry in state),
        ok=ok,
    )


async def job_idle(job):
    """Open ``n`` sockets over ``stores`` stores as real clients do (PullReq + Ping, wait for the answers),
    report READY, hold them idle until the parent says so, then close them."""
    n, n_stores, url, prefix = job["n"], job["stores"], job["url"], job["prefix"]
    semaphore = asyncio.Semaphore(job.get("concurrency", 200))
    failures = []

    async def open_one(index):
        async with semaphore:
            try:
                return await open_client(url, f"{prefix}-{index % n_stores}")
            except Exception as error:  # noqa: BLE001 - counted and reported
                failures.append(repr(error))
                return None

    with Measure() as measure:
        sockets = [s for s in await asyncio.gather(*(open_one(i) for i in range(n))) if s is not None]
    report(f"READY {json.dumps({'open': len(sockets), 'failures': len(failures), 'open_s': measure.wall_s})}")
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    still_open = sum(1 for s in sockets if not s.closed.done())

    async def close_one(socket):
        async with semaphore:
            await socket.close(timeout=10)

    await asyncio.gather(*(close_one(s) for s in sockets))
    return measure.result(open=len(sockets), still_open=still_open, failures=failures[:5], n_failures=len(failures))


JOBS = {
    "warmup": job_warmup,
    "push": job_push,
    "pull": job_pull,
    "fanout": job_fanout,
    "many": job_many,
    "verify_counts": job_verify_counts,
    "scale_push": job_scale_push,
    "idle": job_idle,
}


def report(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main():
    job = json.loads(sys.stdin.readline())
    try:
        result = asyncio.run(JOBS[job["kind"]](job))
    except Exception as error:  # noqa: BLE001 - the parent reports it
        sys.stderr.write(traceback.format_exc())
        report(f"ERROR {type(error).__name__}: {error}")
        sys.exit(1)
    report("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
