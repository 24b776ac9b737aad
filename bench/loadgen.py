"""The load generator: runs one job in its own process, speaking 0.3 or 0.4 ws over raw sockets.

    python -m bench.loadgen            # reads one JSON job line on stdin

Protocol with the parent (``bench.runner``): the job comes as one JSON line on stdin. A job that holds
sockets open for the parent to measure (``idle``) prints ``READY {json}`` and waits for one line on stdin.
The last line on stdout is ``RESULT {json}`` (or ``ERROR message``). Every result says how much CPU the
load generator used while it was measuring (``loadgen_cpu_s`` over ``wall_s``); the parent adds the whole
process's CPU from ``wait4``.

A job's ``protocol`` (``0.3``, the default, or ``0.4-ws``) picks its client (``bench.clients``). Every frame
sent is built by ``bench.frames`` or ``bench.frames04`` (checked against the real clients by
``python -m bench.verify_frames`` and ``python -m bench.verify_frames04``).
"""

import asyncio
import itertools
import json
import sys
import time
import traceback

from bench.clients import CLIENTS
from bench.measure import Measure, percentiles, report
from bench.sustained_load import job_sustained
from bench.wsraw import now


async def push_events(client, total, batch, first_seq=1, client_id="bench"):
    """Push ``total`` todo events in batches of ``batch``, each waiting for its acknowledgement; ack latencies."""
    latencies = []
    for first in range(first_seq, first_seq + total, batch):
        sent_at, acked_at = await client.push(first, min(batch, first_seq + total - first), client_id)
        latencies.append(acked_at - sent_at)
    return latencies


# -- jobs: each gets the job's client class (0.3 or 0.4 ws) first ---------------------------------------------


async def job_warmup(client_class, job):
    """One socket: pull, ping, a few pushes. Starts lazy parts of a fresh server before anything is timed."""
    for index, url in enumerate(job["urls"]):
        client = await client_class.open(url, f"{job['store']}-{index}")
        await push_events(client, 5, 1)
        await client.close()
    return {"ok": True}


async def job_push(client_class, job):
    client = await client_class.open(job["url"], job["store"])
    with Measure() as measure:
        latencies = await push_events(client, job["total"], job["batch"])
    await client.close()
    return measure.result(
        events=job["total"],
        events_per_s=job["total"] / measure.wall_s,
        ack_ms={k: v * 1000 for k, v in percentiles(latencies).items()},
    )


async def job_pull(client_class, job):
    """A fresh socket pulls the whole store: time from the pull request to its last page."""
    with Measure() as measure:
        result = await client_class.cold_pull(job["url"], job["store"], job["expected"])
    return measure.result(**result)


async def job_fanout(client_class, job):
    """``subscribers`` sockets on one store, round-robin over ``sub_urls``; a pusher on ``url`` sends ``pushes``
    single-event pushes, one at a time, each after every subscriber received the previous one. Latency: push
    sent to broadcast received. Push ``n`` carries event ``n + 1``, which identifies it in every protocol."""
    n_subs, n_pushes, store = job["subscribers"], job["pushes"], job["store"]
    sub_urls = job["sub_urls"]
    sent_at = [0.0] * n_pushes
    received = [0] * n_pushes
    latencies = []
    all_received = {}
    ready = []

    def subscriber():
        pulled = asyncio.get_running_loop().create_future()
        ready.append(pulled)

        def on_events(arrived_at, seq_nums, caught_up):
            if caught_up and not pulled.done():
                pulled.set_result(None)
            for seq_num in seq_nums:
                number = seq_num - 1
                latencies.append(arrived_at - sent_at[number])
                received[number] += 1
                if received[number] == n_subs:
                    waiter = all_received.get(number)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)

        return on_events

    semaphore = asyncio.Semaphore(100)

    async def open_subscriber(index):
        async with semaphore:
            return await client_class.open(sub_urls[index % len(sub_urls)], store, on_events=subscriber())

    subscribers = await asyncio.gather(*(open_subscriber(i) for i in range(n_subs)))
    await asyncio.wait_for(asyncio.gather(*ready), 60)
    pusher = await client_class.open(job["url"], store)
    missing = 0
    with Measure() as measure:
        for number in range(n_pushes):
            waiter = all_received[number] = asyncio.get_running_loop().create_future()
            sent_at[number] = now()  # before the push: its broadcast may overtake its acknowledgement
            await pusher.push(number + 1, 1)
            try:
                await asyncio.wait_for(waiter, 10)
            except TimeoutError:
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


async def job_many(client_class, job):
    """``stores`` clients at once, each pushing ``events`` single-event pushes to its own store; clients are
    spread round-robin over ``urls``. Timed from the first connect to the last ack."""
    urls, n_stores, n_events, prefix = job["urls"], job["stores"], job["events"], job["prefix"]
    connect_times = []

    async def client(index):
        started = time.perf_counter()
        socket = await client_class.open(urls[index % len(urls)], f"{prefix}-{index}")
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


async def job_verify_counts(client_class, job):
    """Each store pulled through another URL than the one it was pushed through: exactly 1..expected."""
    urls, prefix, expected = job["urls"], job["prefix"], job["expected"]
    bad = []

    async def check(index):
        url = urls[(index + 1) % len(urls)]
        result = await client_class.cold_pull(url, f"{prefix}-{index}", expected)
        return result["events"]

    results = await asyncio.gather(*(check(i) for i in range(job["stores"])), return_exceptions=True)
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            bad.append(f"{prefix}-{index}: {result}")
    return {"stores": job["stores"], "bad": bad, "ok": not bad}


async def job_scale_push(client_class, job):
    """One pusher on ``pusher_url``; one subscriber on each of ``sub_urls`` must receive every event once, in
    order (across processes the broadcast goes through Redis)."""
    total, batch, store = job["total"], job["batch"], job["store"]
    state = []

    def subscriber():
        entry = {"next": 1, "errors": 0, "done": asyncio.get_running_loop().create_future(), "pulled": False}
        state.append(entry)

        def on_events(arrived_at, seq_nums, caught_up):
            if caught_up:
                entry["pulled"] = True
            for seq_num in seq_nums:
                if seq_num == entry["next"]:
                    entry["next"] += 1
                else:
                    entry["errors"] += 1
            if entry["next"] > total and not entry["done"].done():
                entry["done"].set_result(arrived_at)

        return on_events

    subscribers = [await client_class.open(url, store, on_events=subscriber()) for url in job["sub_urls"]]
    deadline = time.monotonic() + 30
    while not all(entry["pulled"] for entry in state) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    pusher = await client_class.open(job["pusher_url"], store)
    with Measure() as measure:
        latencies = await push_events(pusher, total, batch)
    try:
        await asyncio.wait_for(asyncio.gather(*(entry["done"] for entry in state)), 30)
    except TimeoutError:
        pass
    await pusher.close()
    await asyncio.gather(*(s.close() for s in subscribers))
    received = [entry["next"] - 1 for entry in state]
    ok = all(r == total for r in received) and not any(entry["errors"] for entry in state)
    return measure.result(
        events=total,
        batch=batch,
        events_per_s=total / measure.wall_s,
        ack_ms={k: v * 1000 for k, v in percentiles(latencies).items()},
        subscribers_received=received,
        out_of_order=sum(entry["errors"] for entry in state),
        ok=ok,
    )


async def job_idle(client_class, job):
    """Open ``n`` sockets over ``stores`` stores as real clients do (pull + ping, wait for the answers),
    report READY, hold them idle until the parent says so, then close them."""
    n, n_stores, url, prefix = job["n"], job["stores"], job["url"], job["prefix"]
    semaphore = asyncio.Semaphore(job.get("concurrency", 200))
    failures = []

    async def open_one(index):
        async with semaphore:
            try:
                return await client_class.open(url, f"{prefix}-{index % n_stores}")
            except Exception as error:  # noqa: BLE001 - counted and reported
                failures.append(repr(error))
                return None

    with Measure() as measure:
        clients = [c for c in await asyncio.gather(*(open_one(i) for i in range(n))) if c is not None]
    report(f"READY {json.dumps({'open': len(clients), 'failures': len(failures), 'open_s': measure.wall_s})}")
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    still_open = sum(1 for c in clients if not c.closed.done())

    async def close_one(client):
        async with semaphore:
            await client.close(timeout=10)

    await asyncio.gather(*(close_one(c) for c in clients))
    return measure.result(open=len(clients), still_open=still_open, failures=failures[:5], n_failures=len(failures))


async def job_new_stores(client_class, job):
    """``stores`` new stores, each opened by a socket of its own that pushes one event and closes,
    ``concurrency`` at a time. After each tenth: READY with how long it took, and the job waits for the
    parent (which samples the server's memory meanwhile)."""
    n, url, prefix = job["stores"], job["url"], job["prefix"]
    semaphore = asyncio.Semaphore(job.get("concurrency", 20))

    async def one(index):
        async with semaphore:
            socket = await client_class.open(url, f"{prefix}-{index}")
            await push_events(socket, 1, 1, client_id=f"bench-{index}")
            await socket.close()

    bounds = [round(n * tenth / 10) for tenth in range(11)]
    seconds = []
    with Measure() as measure:
        for tenth in range(10):
            started = time.perf_counter()
            await asyncio.gather(*(one(index) for index in range(bounds[tenth], bounds[tenth + 1])))
            seconds.append(time.perf_counter() - started)
            report(f"READY {json.dumps({'stores': bounds[tenth + 1], 's': seconds[-1]})}")
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return measure.result(stores=n, tenths_s=seconds, tenths_stores=[b - a for a, b in itertools.pairwise(bounds)])


async def job_first_pushes(client_class, job):
    """``stores`` new stores one after the other, ``pause_s`` apart: how long each store's first push takes
    to be acknowledged (its socket already open), as someone who just made a document waits for it."""
    latencies = []
    with Measure() as measure:
        for index in range(job["stores"]):
            socket = await client_class.open(job["url"], f"{job['prefix']}-{index}")
            latencies += await push_events(socket, 1, 1, client_id=f"bench-{index}")
            await socket.close()
            await asyncio.sleep(job["pause_s"])
    return measure.result(stores=job["stores"], ack_ms={k: v * 1000 for k, v in percentiles(latencies).items()})


JOBS = {
    "warmup": job_warmup,
    "first_pushes": job_first_pushes,
    "push": job_push,
    "pull": job_pull,
    "fanout": job_fanout,
    "many": job_many,
    "verify_counts": job_verify_counts,
    "scale_push": job_scale_push,
    "idle": job_idle,
    "new_stores": job_new_stores,
    "sustained": job_sustained,
}


def main():
    job = json.loads(sys.stdin.readline())
    try:
        result = asyncio.run(JOBS[job["kind"]](CLIENTS[job.get("protocol", "0.3")], job))
    except Exception as error:  # noqa: BLE001 - the parent reports it
        sys.stderr.write(traceback.format_exc())
        report(f"ERROR {type(error).__name__}: {error}")
        sys.exit(1)
    report("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
