/**
 * One client socket per protocol, as the real client uses it: a port of `bench/clients.py`, on Node's `ws`.
 *
 * Each client opens `new WebSocket(url)` with `ws`'s defaults, as the real clients do (they construct
 * `globalThis.WebSocket`, which is `ws` under Node): so, unlike the Python generator, it offers
 * `permessage-deflate`, and takes it where the server accepts it (wrangler dev's workerd does, daphne does
 * not). `ws` comes from the interop suite that pins the real client of that protocol.
 *
 * - `await Client.open(url, store, onEvents)`: connect and start the client's live pull. Without `onEvents`
 *   it returns once the pull is answered; with it, every event the socket receives goes to
 *   `onEvents(arrivedAt, seqNums, caughtUp)`, as in `bench/clients.py`.
 * - `await client.push(firstSeq, count, clientId)`: push todo events, wait for the acknowledgement;
 *   returns `[sentAt, ackedAt]` in seconds on `now()`'s clock.
 * - `await Client.coldPull(url, store, expected)`: a fresh socket pulls the whole store, checked in order.
 * - `client.closed` (a promise) and `await client.close()`.
 *
 * Times are taken when the event loop handles a message (Node has no kernel receive timestamps): with
 * many sockets busy at once this includes the loop's queueing, which the Python generator leaves out.
 */
import { createRequire } from 'node:module'
import { performance } from 'node:perf_hooks'

import * as frames from './frames.mjs'

const interop = new URL('../../tests/interop/', import.meta.url)
const wsFor = (project) => createRequire(new URL('package.json', project))('ws')
const WS = { '0.3': wsFor(interop), '0.4-ws': wsFor(new URL('v04/', interop)) }

export const now = () => performance.now() / 1000

export class ServerError extends Error {}

const deferred = () => {
  let resolve, reject
  const promise = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  promise.catch(() => {}) // a waiter nobody awaits any more (its socket closed) is no unhandled rejection
  return { promise, resolve, reject, done: false }
}

const settle = (waiter, method, value) => {
  if (waiter === undefined || waiter.done) return
  waiter.done = true
  waiter[method](value)
}

/** Open a socket; `onMessage(arrivedAt, text)` gets every text message. */
const connect = (WebSocket, url, onMessage, timeoutMs = 60_000) =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(url)
    const timer = setTimeout(() => {
      socket.terminate()
      reject(new Error(`connect timed out after ${timeoutMs} ms`))
    }, timeoutMs)
    socket.closed = new Promise((done) => socket.once('close', done))
    socket.on('message', (data) => onMessage(now(), data.toString()))
    socket.once('open', () => {
      clearTimeout(timer)
      resolve(socket)
    })
    socket.once('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })

const closeSocket = async (socket, timeoutS) => {
  if (socket.readyState === socket.CLOSED) return
  socket.close(1000)
  let timer
  const timedOut = new Promise((resolve) => {
    timer = setTimeout(() => resolve(true), timeoutS * 1000)
  })
  if (await Promise.race([socket.closed.then(() => false), timedOut])) socket.terminate()
  clearTimeout(timer)
}

/** Pulled events must be 1, 2, 3, … exactly once. */
class InOrder {
  nextSeq = 1
  chunks = 0

  add(seqNums) {
    this.chunks += 1
    for (const seqNum of seqNums) {
      if (seqNum !== this.nextSeq) throw new ServerError(`pull returned e${seqNum}, expected e${this.nextSeq}`)
      this.nextSeq += 1
    }
  }

  result(expected, started, connected, sentAt, doneAt) {
    const events = this.nextSeq - 1
    if (events !== expected) throw new ServerError(`pull returned ${events} events, expected ${expected}`)
    return {
      events,
      chunks: this.chunks,
      connect_s: connected - started,
      pull_s: doneAt - sentAt,
      connect_and_pull_s: doneAt - started,
      events_per_s: events / (doneAt - sentAt),
    }
  }
}

// -- 0.3 ---------------------------------------------------------------------------------------------------

export class Client03 {
  static protocol = '0.3'

  constructor(onEvents) {
    this.onEvents = onEvents
    this.pushes = 0
    this.replies = new Map() // request id -> waiter for its PushAck (or the first PullRes of a pull)
  }

  async connect(url, store) {
    this.socket = await connect(WS['0.3'], frames.storeUrl03(url, store), (at, text) => this.onMessage(at, text))
    this.closed = this.socket.closed
    this.closed.then(() => this.fail(new ServerError('connection closed')))
    return this
  }

  /** `PullReq` (no cursor), then `Ping`, as the client opens a socket. */
  static async open(url, store, onEvents = null) {
    const client = await new Client03(onEvents).connect(url, store)
    const reqId = frames.requestId('pull-', 0)
    const pulled = client.expect(reqId)
    client.socket.send(frames.pullReq(reqId))
    client.socket.send(frames.PING_03)
    if (onEvents === null) await pulled.promise
    return client
  }

  expect(reqId) {
    const waiter = deferred()
    this.replies.set(reqId, waiter)
    return waiter
  }

  onMessage(arrivedAt, text) {
    const frame = JSON.parse(text)
    switch (frame._tag) {
      case 'WSMessage.PullRes': {
        const { context, requestId } = frame.requestId
        if (context === 'pull' && this.replies.has(requestId)) {
          settle(this.replies.get(requestId), 'resolve', arrivedAt)
          this.replies.delete(requestId)
        }
        this.onEvents?.(
          arrivedAt,
          frame.batch.map((item) => item.eventEncoded.seqNum),
          context === 'pull' && (frame.remaining ?? 0) === 0,
        )
        this.onPage?.(arrivedAt, frame)
        break
      }
      case 'WSMessage.PushAck':
        settle(this.replies.get(frame.requestId), 'resolve', arrivedAt)
        this.replies.delete(frame.requestId)
        break
      case 'WSMessage.Error':
        settle(this.replies.get(frame.requestId), 'reject', new ServerError(frame.message))
        this.replies.delete(frame.requestId)
        break
    }
  }

  fail(error) {
    for (const waiter of this.replies.values()) settle(waiter, 'reject', error)
    this.replies.clear()
  }

  async push(firstSeq, count, clientId = 'bench') {
    const reqId = frames.requestId('push-', this.pushes)
    this.pushes += 1
    const waiter = this.expect(reqId)
    const sentAt = now()
    this.socket.send(frames.todoPush(reqId, firstSeq, count, clientId, `${clientId}-session`))
    return [sentAt, await waiter.promise]
  }

  /** Time from the `PullReq` to the `PullRes` with `remaining: 0`. */
  static async coldPull(url, store, expected) {
    const started = now()
    const client = await new Client03(null).connect(url, store)
    const connected = now()
    const reqId = frames.requestId('pull-', 1)
    const order = new InOrder()
    const done = deferred()
    client.onPage = (arrivedAt, frame) => {
      if (frame.requestId.context !== 'pull' || frame.requestId.requestId !== reqId || done.done) return
      try {
        order.add(frame.batch.map((item) => item.eventEncoded.seqNum))
      } catch (error) {
        settle(done, 'reject', error)
        return
      }
      if ((frame.remaining ?? 0) === 0) settle(done, 'resolve', arrivedAt)
    }
    const sentAt = now()
    client.socket.send(frames.pullReq(reqId))
    const doneAt = await done.promise
    await client.close()
    return order.result(expected, started, connected, sentAt, doneAt)
  }

  close(timeoutS = 5) {
    return closeSocket(this.socket, timeoutS)
  }
}

// -- 0.4 ws ------------------------------------------------------------------------------------------------

/** One ws connection multiplexing the client's RPCs: it acks every `Chunk` and sends the backendId it last
 * saw with each push, as the client does. */
export class Client04 {
  static protocol = '0.4-ws'

  constructor(store) {
    this.store = store
    this.backendId = null
    this.ids = 0
    this.exits = new Map() // request id -> waiter of [arrivedAt, exit, text]
    this.streams = new Map() // request id -> (arrivedAt, seqNums, caughtUp)
    this.pong = undefined
  }

  async connect(url) {
    this.socket = await connect(WS['0.4-ws'], frames.storeUrl04(url, this.store), (at, text) =>
      this.onMessage(at, text),
    )
    this.closed = this.socket.closed
    this.closed.then(() => this.fail(new ServerError('connection closed')))
    return this
  }

  nextId() {
    this.ids += 1
    return String(this.ids - 1)
  }

  /** `Ping`, then a live `Pull` from the start, as the client opens a socket. */
  static async open(url, store, onEvents = null) {
    const client = await new Client04(store).connect(url)
    const caughtUp = deferred()
    if (onEvents === null) client.pong = deferred()
    client.socket.send(frames.PING_04)
    const reqId = client.nextId()
    client.streams.set(reqId, (arrivedAt, seqNums, done) => {
      if (done) settle(caughtUp, 'resolve', arrivedAt)
      onEvents?.(arrivedAt, seqNums, done)
    })
    client.socket.send(frames.pull(reqId, store))
    if (onEvents === null) await Promise.all([client.pong.promise, caughtUp.promise])
    return client
  }

  onMessage(arrivedAt, text) {
    const reply = JSON.parse(text)
    switch (reply._tag) {
      case 'Chunk': {
        this.socket.send(frames.ack(reply.requestId))
        const seqNums = []
        let caughtUp = false
        for (const value of reply.values) {
          this.backendId = value.backendId
          for (const item of value.batch) seqNums.push(item.eventEncoded.seqNum)
          caughtUp = caughtUp || value.pageInfo._tag === 'NoMore'
        }
        this.streams.get(reply.requestId)?.(arrivedAt, seqNums, caughtUp)
        break
      }
      case 'Exit': {
        const waiter = this.exits.get(reply.requestId)
        this.exits.delete(reply.requestId)
        settle(waiter, 'resolve', [arrivedAt, reply.exit, text])
        break
      }
      case 'Pong':
        settle(this.pong, 'resolve', arrivedAt)
        break
      case 'Defect':
        this.fail(new ServerError(`Defect: ${text.slice(0, 300)}`))
        break
    }
  }

  fail(error) {
    for (const waiter of [...this.exits.values(), this.pong]) settle(waiter, 'reject', error)
    this.exits.clear()
  }

  async push(firstSeq, count, clientId = 'bench') {
    const reqId = this.nextId()
    const waiter = deferred()
    this.exits.set(reqId, waiter)
    const sentAt = now()
    this.socket.send(frames.todoPush04(reqId, this.store, firstSeq, count, clientId, this.backendId))
    const [ackedAt, exit, text] = await waiter.promise
    if (exit._tag !== 'Success') throw new ServerError(`push failed: ${text.slice(0, 300)}`)
    return [sentAt, ackedAt]
  }

  /** Time from the (live) `Pull` to the chunk whose page is `NoMore`. */
  static async coldPull(url, store, expected) {
    const started = now()
    const client = await new Client04(store).connect(url)
    const connected = now()
    const order = new InOrder()
    const done = deferred()
    const reqId = client.nextId()
    client.streams.set(reqId, (arrivedAt, seqNums, caughtUp) => {
      if (done.done) return
      try {
        order.add(seqNums)
      } catch (error) {
        settle(done, 'reject', error)
        return
      }
      if (caughtUp) settle(done, 'resolve', arrivedAt)
    })
    const sentAt = now()
    client.socket.send(frames.pull(reqId, store))
    const doneAt = await done.promise
    await client.close()
    return order.result(expected, started, connected, sentAt, doneAt)
  }

  close(timeoutS = 5) {
    return closeSocket(this.socket, timeoutS)
  }
}

export const CLIENTS = { '0.3': Client03, '0.4-ws': Client04 }
