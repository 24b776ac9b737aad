"""The sustained-load job of the load generator (``bench.loadgen``; ``bench/node/sustained.mjs`` is its port).

``sockets`` clients over ``stores`` stores, each socket a live subscriber of its store; then a stepped ramp: at
each total rate of ``rates`` (events/s), for ``step_s`` seconds, every socket pushes one event at
``rate / sockets`` per second, the sockets' turns spread evenly in a shuffled order. A store's pushes go one at
a time: the generator knows each store's head, so no push is rejected as behind (a real client would pull and
retry); a turn that comes while its store's push is out waits for its acknowledgement, and turns still waiting
when the step ends are dropped (and counted), so a server too slow for the rate shows as an achieved rate below
the offered one. Ack latency: push sent to its acknowledgement. Delivery latency: push sent to its event's
arrival at each other socket of the store. After each step: ``READY`` with its figures; the parent samples the
servers' CPU and answers; the ramp stops after the first step that does not hold.
"""

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field

from bench.measure import Measure, percentiles_ms, report
from bench.wsraw import now


@dataclass
class Store:
    head: int = 0
    members: int = 0
    busy: bool = False
    broken: bool = False
    waiting: list = field(default_factory=list)
    sent: dict = field(default_factory=dict)  # seqNum -> (sent_at, pusher, step) until the step ends


@dataclass
class Step:
    sent: int = 0
    acked: int = 0
    errors: int = 0
    dropped: int = 0
    expected: int = 0
    delivered: int = 0
    ack: list = field(default_factory=list)
    delivery: list = field(default_factory=list)
    queued: list = field(default_factory=list)


def placement(job, index):
    """Socket ``index`` is on store ``index % stores``, and the sockets of one store take the processes in turn."""
    urls = job["urls"]
    return urls[index // job["stores"] % len(urls)], f"{job['prefix']}-{index % job['stores']}"


async def run_step(job, clients, stores, rate):
    step = Step()
    total = round(rate * job["step_s"])
    running = True
    tasks = set()

    async def push(socket, store, seq_num):
        try:
            sent_at, acked_at = await clients[socket].push(seq_num, 1, f"bench-{socket}")
        except Exception:  # noqa: BLE001 - counted; the store's head is unknown now: no more pushes to it
            step.errors += 1
            store.broken = True
        else:
            step.ack.append(acked_at - sent_at)
            step.acked += 1
            store.head = seq_num
        store.busy = False
        if running and store.waiting:
            send(*store.waiting.pop(0))

    def send(socket, due):
        store = stores[socket % job["stores"]]
        seq_num = store.head + 1
        store.busy = True
        sent_at = now()
        store.sent[seq_num] = (sent_at, socket, step)
        step.expected += store.members - 1
        step.queued.append(sent_at - due)
        step.sent += 1
        task = asyncio.ensure_future(push(socket, store, seq_num))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def turn(socket, due):
        store = stores[socket % job["stores"]]
        if store.broken:
            step.dropped += 1
        elif store.busy:
            store.waiting.append((socket, due))
        else:
            send(socket, due)

    order = list(range(len(clients)))
    random.shuffle(order)
    with Measure() as measure:
        start, index = now(), 0
        while index < total:
            moment = now()
            while index < total and start + index / rate <= moment:
                turn(order[index % len(order)], start + index / rate)
                index += 1
            if index < total:
                await asyncio.sleep(max(0.0, start + index / rate - now()))
        running = False
        for store in stores:
            step.dropped += len(store.waiting)
            store.waiting = []
        deadline = now() + job["drain_s"]
        while (tasks or step.delivered < step.expected) and now() < deadline:
            await asyncio.sleep(0.01)
    for store in stores:
        store.sent.clear()  # later arrivals count as missing
    delivery = percentiles_ms(step.delivery)
    missing = step.expected - step.delivered
    holds = (
        step.errors == 0
        and missing == 0
        and step.acked >= job["min_share"] * total
        and delivery["p99"] is not None
        and delivery["p99"] < job["limit_ms"]
    )
    return measure.result(
        step="step",
        rate=rate,
        events_offered=total,
        events_sent=step.sent,
        events_acked=step.acked,
        achieved_per_s=step.acked / job["step_s"],
        dropped=step.dropped,
        errors=step.errors,
        deliveries=step.delivered,
        missing=missing,
        ack_ms=percentiles_ms(step.ack),
        delivery_ms=delivery,
        queued_ms=percentiles_ms(step.queued),
        holds=holds,
    )


async def job_sustained(client_class, job):
    stores = [Store() for _ in range(job["stores"])]
    caught_up = []

    def subscriber(index):
        store = stores[index % job["stores"]]
        store.members += 1
        pulled = asyncio.get_running_loop().create_future()
        caught_up.append(pulled)

        def on_events(arrived_at, seq_nums, done):
            if done and not pulled.done():
                pulled.set_result(None)
            for seq_num in seq_nums:
                sent = store.sent.get(seq_num)
                if sent is None or sent[1] == index:
                    continue
                sent[2].delivery.append(arrived_at - sent[0])
                sent[2].delivered += 1

        return on_events

    semaphore = asyncio.Semaphore(100)

    async def open_one(index):
        url, store = placement(job, index)
        on_events = subscriber(index)
        async with semaphore:
            return await client_class.open(url, store, on_events=on_events)

    steps = []
    with Measure() as whole:
        clients = await asyncio.gather(*(open_one(i) for i in range(job["sockets"])))
        try:
            await asyncio.wait_for(asyncio.gather(*caught_up), 60)
        except TimeoutError:
            raise RuntimeError("the sockets did not catch up within 60 s") from None
        open_s = time.perf_counter() - whole.wall0
        report(f"READY {json.dumps({'step': 'open', 'open': len(clients), 'open_s': open_s})}")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for rate in job["rates"]:
            result = await run_step(job, clients, stores, rate)
            steps.append(result)
            report(f"READY {json.dumps(result)}")
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            if not result["holds"]:
                break

        async def close_one(client):
            async with semaphore:
                await client.close(timeout=10)

        await asyncio.gather(*(close_one(c) for c in clients))
    return whole.result(sockets=job["sockets"], stores=job["stores"], open_s=open_s, steps=steps)
