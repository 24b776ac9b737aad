/**
 * The load generator's jobs, a port of `bench/loadgen.py`'s: same job fields, same result keys and units, so
 * the parent (`bench/runner.py`) and the scenarios take either generator's results alike. Each job gets its
 * protocol's client class (`clients.mjs`) first; `report(line)` writes a `READY` line, `nextLine()` waits for
 * the parent's answer.
 */
import { now } from './clients.mjs'

/** Wall and CPU time of the measured part of a job (the whole process's CPU, libuv's threads included). */
export class Measure {
  constructor() {
    this.wall0 = now()
    this.cpu0 = process.cpuUsage()
  }

  stop() {
    this.wall_s = now() - this.wall0
    const cpu = process.cpuUsage(this.cpu0)
    this.cpu_s = (cpu.user + cpu.system) / 1e6
    return this
  }

  result(extra) {
    return { wall_s: this.wall_s, loadgen_cpu_s: this.cpu_s, ...extra }
  }
}

/** Python's `round`: halves go to the even neighbour, so both generators pick the same sample. */
const roundHalfEven = (x) => {
  const floor = Math.floor(x)
  const diff = x - floor
  if (diff !== 0.5) return Math.round(x)
  return floor % 2 === 0 ? floor : floor + 1
}

export const percentiles = (values, points = [50, 95, 99]) => {
  const ordered = Float64Array.from(values).sort()
  const out = {}
  for (const p of points) {
    out[`p${p}`] = ordered.length
      ? ordered[Math.min(ordered.length - 1, roundHalfEven((p / 100) * (ordered.length - 1)))]
      : null
  }
  return out
}

export const inMs = (stats) =>
  Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, v === null ? null : v * 1000]))

export const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000))

/** At most `limit` of the calls at once. */
export const limiter = (limit) => {
  let running = 0
  const queue = []
  const release = () => {
    running -= 1
    queue.shift()?.()
  }
  return async (call) => {
    if (running >= limit) await new Promise((resolve) => queue.push(resolve))
    running += 1
    try {
      return await call()
    } finally {
      release()
    }
  }
}

/** Whether `promise` settles within `seconds`. */
export const withTimeout = (promise, seconds) =>
  Promise.race([promise.then(() => true), sleep(seconds).then(() => false)])

/** Push `total` todo events in batches of `batch`, each waiting for its acknowledgement; ack latencies. */
export const pushEvents = async (client, total, batch, firstSeq = 1, clientId = 'bench') => {
  const latencies = []
  for (let first = firstSeq; first < firstSeq + total; first += batch) {
    const [sentAt, ackedAt] = await client.push(first, Math.min(batch, firstSeq + total - first), clientId)
    latencies.push(ackedAt - sentAt)
  }
  return latencies
}

const warmup = async (Client, job) => {
  for (const [index, url] of job.urls.entries()) {
    const client = await Client.open(url, `${job.store}-${index}`)
    await pushEvents(client, 5, 1)
    await client.close()
  }
  return { ok: true }
}

const push = async (Client, job) => {
  const client = await Client.open(job.url, job.store)
  const measure = new Measure()
  const latencies = await pushEvents(client, job.total, job.batch)
  measure.stop()
  await client.close()
  return measure.result({
    events: job.total,
    events_per_s: job.total / measure.wall_s,
    ack_ms: inMs(percentiles(latencies)),
  })
}

/** A fresh socket pulls the whole store: time from the pull request to its last page. */
const pull = async (Client, job) => {
  const measure = new Measure()
  const result = await Client.coldPull(job.url, job.store, job.expected)
  return measure.stop().result(result)
}

/** `subscribers` sockets on one store; a pusher sends `pushes` single-event pushes, each after every subscriber
 * received the previous one. Latency: push sent to broadcast received. Push `n` carries event `n + 1`. */
const fanout = async (Client, job) => {
  const { subscribers: nSubs, pushes: nPushes, store, sub_urls: subUrls } = job
  const sentAt = new Float64Array(nPushes)
  const received = new Int32Array(nPushes)
  const allReceived = new Map()
  const latencies = []
  const ready = []
  const subscriber = () => {
    let pulled
    ready.push(new Promise((resolve) => (pulled = resolve)))
    return (arrivedAt, seqNums, caughtUp) => {
      if (caughtUp) pulled()
      for (const seqNum of seqNums) {
        const number = seqNum - 1
        latencies.push(arrivedAt - sentAt[number])
        received[number] += 1
        if (received[number] === nSubs) allReceived.get(number)?.()
      }
    }
  }
  const limit = limiter(100)
  const subs = await Promise.all(
    Array.from({ length: nSubs }, (_, i) => limit(() => Client.open(subUrls[i % subUrls.length], store, subscriber()))),
  )
  if (!(await withTimeout(Promise.all(ready), 60))) throw new Error('subscribers did not catch up within 60 s')
  const pusher = await Client.open(job.url, store)
  let missing = 0
  const measure = new Measure()
  for (let number = 0; number < nPushes; number++) {
    const everyone = new Promise((resolve) => allReceived.set(number, resolve))
    sentAt[number] = now() // before the push: its broadcast may overtake its acknowledgement
    await pusher.push(number + 1, 1)
    if (!(await withTimeout(everyone, 10))) missing += nSubs - received[number]
  }
  measure.stop()
  await pusher.close()
  await Promise.all(subs.map((s) => s.close()))
  return measure.result({
    subscribers: nSubs,
    pushes: nPushes,
    samples: latencies.length,
    missing,
    latency_ms: inMs(percentiles(latencies)),
    max_ms: latencies.length ? latencies.reduce((a, b) => Math.max(a, b)) * 1000 : null,
  })
}

/** `stores` clients at once, each pushing `events` single-event pushes to its own store, round-robin over
 * `urls`. Timed from the first connect to the last ack. */
const many = async (Client, job) => {
  const { urls, stores: nStores, events: nEvents, prefix } = job
  const connectTimes = []
  const client = async (index) => {
    const started = now()
    const socket = await Client.open(urls[index % urls.length], `${prefix}-${index}`)
    connectTimes.push(now() - started)
    const latencies = await pushEvents(socket, nEvents, 1, 1, `bench-${index}`)
    await socket.close()
    return latencies
  }
  const measure = new Measure()
  const results = await Promise.all(Array.from({ length: nStores }, (_, i) => client(i)))
  measure.stop()
  const total = nStores * nEvents
  return measure.result({
    events: total,
    events_per_s: total / measure.wall_s,
    connect_max_s: connectTimes.reduce((a, b) => Math.max(a, b)),
    ack_ms: inMs(percentiles(results.flat())),
  })
}

/** Each store pulled through another URL than the one it was pushed through: exactly 1..expected. */
const verifyCounts = async (Client, job) => {
  const { urls, prefix, expected } = job
  const results = await Promise.allSettled(
    Array.from({ length: job.stores }, (_, i) =>
      Client.coldPull(urls[(i + 1) % urls.length], `${prefix}-${i}`, expected),
    ),
  )
  const bad = results.flatMap((r, i) => (r.status === 'rejected' ? [`${prefix}-${i}: ${r.reason}`] : []))
  return { stores: job.stores, bad, ok: bad.length === 0 }
}

/** One pusher on `pusher_url`; one subscriber on each of `sub_urls` must receive every event once, in order. */
const scalePush = async (Client, job) => {
  const { total, batch, store } = job
  const state = []
  const subscriber = () => {
    const entry = { next: 1, errors: 0, pulled: false }
    entry.done = new Promise((resolve) => (entry.resolve = resolve))
    state.push(entry)
    return (arrivedAt, seqNums, caughtUp) => {
      if (caughtUp) entry.pulled = true
      for (const seqNum of seqNums) {
        if (seqNum === entry.next) entry.next += 1
        else entry.errors += 1
      }
      if (entry.next > total) entry.resolve(arrivedAt)
    }
  }
  const subs = []
  for (const url of job.sub_urls) subs.push(await Client.open(url, store, subscriber()))
  const deadline = now() + 30
  while (!state.every((e) => e.pulled) && now() < deadline) await sleep(0.01)
  const pusher = await Client.open(job.pusher_url, store)
  const measure = new Measure()
  const latencies = await pushEvents(pusher, total, batch)
  measure.stop()
  await withTimeout(Promise.all(state.map((e) => e.done)), 30)
  await pusher.close()
  await Promise.all(subs.map((s) => s.close()))
  const received = state.map((e) => e.next - 1)
  const outOfOrder = state.reduce((sum, e) => sum + e.errors, 0)
  return measure.result({
    events: total,
    batch,
    events_per_s: total / measure.wall_s,
    ack_ms: inMs(percentiles(latencies)),
    subscribers_received: received,
    out_of_order: outOfOrder,
    ok: received.every((r) => r === total) && outOfOrder === 0,
  })
}

/** Open `n` sockets over `stores` stores as real clients do, report READY, hold them idle until the parent
 * says so, then close them. */
const idle = async (Client, job, { report, nextLine }) => {
  const { n, stores: nStores, url, prefix } = job
  const limit = limiter(job.concurrency ?? 200)
  const failures = []
  const measure = new Measure()
  const opened = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      limit(() => Client.open(url, `${prefix}-${i % nStores}`)).catch((error) => {
        failures.push(String(error))
        return null
      }),
    ),
  )
  measure.stop()
  const clients = opened.filter((c) => c !== null)
  report(`READY ${JSON.stringify({ open: clients.length, failures: failures.length, open_s: measure.wall_s })}`)
  await nextLine()
  const stillOpen = clients.filter((c) => c.socket.readyState === c.socket.OPEN).length
  await Promise.all(clients.map((c) => limit(() => c.close(10))))
  return measure.result({
    open: clients.length,
    still_open: stillOpen,
    failures: failures.slice(0, 5),
    n_failures: failures.length,
  })
}

/** `stores` new stores, each opened by a socket of its own that pushes one event and closes, `concurrency`
 * at a time; READY after each tenth, then wait for the parent. */
const newStores = async (Client, job, { report, nextLine }) => {
  const { stores: n, url, prefix } = job
  const limit = limiter(job.concurrency ?? 20)
  const one = (index) =>
    limit(async () => {
      const socket = await Client.open(url, `${prefix}-${index}`)
      await pushEvents(socket, 1, 1, 1, `bench-${index}`)
      await socket.close()
    })
  const bounds = Array.from({ length: 11 }, (_, tenth) => Math.round((n * tenth) / 10))
  const seconds = []
  const measure = new Measure()
  for (let tenth = 0; tenth < 10; tenth++) {
    const started = now()
    const indexes = Array.from({ length: bounds[tenth + 1] - bounds[tenth] }, (_, i) => bounds[tenth] + i)
    await Promise.all(indexes.map(one))
    seconds.push(now() - started)
    report(`READY ${JSON.stringify({ stores: bounds[tenth + 1], s: seconds.at(-1) })}`)
    await nextLine()
  }
  measure.stop()
  const tenthsStores = bounds.slice(1).map((b, i) => b - bounds[i])
  return measure.result({ stores: n, tenths_s: seconds, tenths_stores: tenthsStores })
}

/** `stores` new stores one after the other, `pause_s` apart: how long each store's first push takes. */
const firstPushes = async (Client, job) => {
  const latencies = []
  const measure = new Measure()
  for (let index = 0; index < job.stores; index++) {
    const socket = await Client.open(job.url, `${job.prefix}-${index}`)
    latencies.push(...(await pushEvents(socket, 1, 1, 1, `bench-${index}`)))
    await socket.close()
    await sleep(job.pause_s)
  }
  measure.stop()
  return measure.result({ stores: job.stores, ack_ms: inMs(percentiles(latencies)) })
}

export const JOBS = {
  warmup,
  first_pushes: firstPushes,
  push,
  pull,
  fanout,
  many,
  verify_counts: verifyCounts,
  scale_push: scalePush,
  idle,
  new_stores: newStores,
}
