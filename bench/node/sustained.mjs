/**
 * The sustained-load job, a port of `bench/sustained_load.py` (same fields, same READY lines and results).
 *
 * `sockets` clients over `stores` stores, each socket a live subscriber of its store; then a stepped ramp:
 * at each total rate of `rates` (events/s), for `step_s` seconds, every socket pushes one event at
 * `rate / sockets` per second, the sockets' turns spread evenly in a shuffled order. A store's pushes go one
 * at a time: the generator knows each store's head, so no push is rejected as behind (a real client would
 * pull and retry); a turn that comes while its store's push is out waits for its acknowledgement, and turns
 * still waiting when the step ends are dropped (and counted), so a server too slow for the rate shows as an
 * achieved rate below the offered one. Ack latency: push sent to its acknowledgement. Delivery latency: push
 * sent to its event's arrival at each other socket of the store. After each step: READY with its figures;
 * the parent samples the servers' CPU and answers; the ramp stops after the first step that does not hold.
 */
import { now } from './clients.mjs'
import { inMs, limiter, Measure, percentiles, sleep, withTimeout } from './jobs.mjs'

const shuffled = (n) => {
  const order = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[order[i], order[j]] = [order[j], order[i]]
  }
  return order
}

/** Socket `i` is on store `i % stores`, and the sockets of one store take the processes in turn. */
const placement = (job, index) => ({
  url: job.urls[Math.floor(index / job.stores) % job.urls.length],
  store: `${job.prefix}-${index % job.stores}`,
})

const runStep = async (job, clients, stores, rate) => {
  const stats = { sent: 0, acked: 0, errors: 0, dropped: 0, expected: 0, delivered: 0, ack: [], delivery: [], lag: [] }
  const total = Math.round(rate * job.step_s)
  const measure = new Measure()
  let running = true
  let inflight = 0

  const send = (socket, due) => {
    const store = stores[socket % job.stores]
    const seqNum = store.head + 1
    store.busy = true
    inflight += 1
    const sentAt = now()
    store.sent.set(seqNum, { sentAt, pusher: socket, stats })
    stats.expected += store.members - 1
    stats.lag.push(sentAt - due)
    stats.sent += 1
    clients[socket]
      .push(seqNum, 1, `bench-${socket}`)
      .then(
        ([pushedAt, ackedAt]) => {
          stats.ack.push(ackedAt - pushedAt)
          stats.acked += 1
          store.head = seqNum
        },
        () => {
          stats.errors += 1
          store.broken = true // its head is unknown now: no more pushes to it
        },
      )
      .finally(() => {
        store.busy = false
        inflight -= 1
        const next = store.waiting.shift()
        if (running && next !== undefined) send(...next)
      })
  }

  const turn = (socket, due) => {
    const store = stores[socket % job.stores]
    if (store.broken) stats.dropped += 1
    else if (store.busy) store.waiting.push([socket, due])
    else send(socket, due)
  }

  const order = shuffled(clients.length)
  const start = now()
  for (let j = 0; j < total; ) {
    const t = now()
    for (; j < total && start + j / rate <= t; j++) turn(order[j % order.length], start + j / rate)
    if (j < total) await sleep(Math.max(0, start + j / rate - now()))
  }
  running = false
  for (const store of stores) {
    stats.dropped += store.waiting.length
    store.waiting = []
  }
  const deadline = now() + job.drain_s
  while ((inflight > 0 || stats.delivered < stats.expected) && now() < deadline) await sleep(0.01)
  measure.stop()
  for (const store of stores) store.sent.clear() // later arrivals count as missing
  const delivery = inMs(percentiles(stats.delivery))
  const missing = stats.expected - stats.delivered
  const holds =
    stats.errors === 0 &&
    missing === 0 &&
    stats.acked >= job.min_share * total &&
    delivery.p99 !== null &&
    delivery.p99 < job.limit_ms
  return measure.result({
    step: 'step',
    rate,
    events_offered: total,
    events_sent: stats.sent,
    events_acked: stats.acked,
    achieved_per_s: stats.acked / job.step_s,
    dropped: stats.dropped,
    errors: stats.errors,
    deliveries: stats.delivered,
    missing,
    ack_ms: inMs(percentiles(stats.ack)),
    delivery_ms: delivery,
    queued_ms: inMs(percentiles(stats.lag)),
    holds,
  })
}

export const sustained = async (Client, job, { report, nextLine }) => {
  const stores = Array.from({ length: job.stores }, () => ({
    head: 0,
    members: 0,
    busy: false,
    broken: false,
    waiting: [],
    sent: new Map(), // seqNum -> { sentAt, pusher, stats } until every other socket got it
  }))
  const caughtUp = []
  const subscriber = (index) => {
    const store = stores[index % job.stores]
    store.members += 1
    let pulled
    caughtUp.push(new Promise((resolve) => (pulled = resolve)))
    return (arrivedAt, seqNums, done) => {
      if (done) pulled()
      for (const seqNum of seqNums) {
        const sent = store.sent.get(seqNum)
        if (sent === undefined || sent.pusher === index) continue
        sent.stats.delivery.push(arrivedAt - sent.sentAt)
        sent.stats.delivered += 1
      }
    }
  }
  const limit = limiter(100)
  const whole = new Measure()
  const clients = await Promise.all(
    Array.from({ length: job.sockets }, (_, i) => {
      const { url, store } = placement(job, i)
      const onEvents = subscriber(i)
      return limit(() => Client.open(url, store, onEvents))
    }),
  )
  if (!(await withTimeout(Promise.all(caughtUp), 60))) throw new Error('the sockets did not catch up within 60 s')
  const openS = now() - whole.wall0
  report(`READY ${JSON.stringify({ step: 'open', open: clients.length, open_s: openS })}`)
  await nextLine()
  const steps = []
  for (const rate of job.rates) {
    const step = await runStep(job, clients, stores, rate)
    steps.push(step)
    report(`READY ${JSON.stringify(step)}`)
    await nextLine()
    if (!step.holds) break
  }
  await Promise.all(clients.map((c) => limit(() => c.close(10))))
  whole.stop()
  return whole.result({ sockets: job.sockets, stores: job.stores, open_s: openS, steps })
}
