/**
 * Times on the wire logs of `client-runtime.mjs` (import this after it): every ws frame and every http exchange
 * gets `at` (ms since the epoch, comparable across processes) and `order` (a counter over every client of this
 * process, so the interleaving of several clients in one process is exact). An http exchange gets `sentAt`/`order`
 * when it leaves, `answeredAt` once its reply was read, or `error` (what `fetch` threw: the request never got an
 * HTTP answer). Only adds fields to the entries `client-runtime.mjs` records; the client sees the same socket
 * and the same `fetch`.
 */
import { wireLogFor } from './client-runtime.mjs'

let order = 0
const stamp = (entry) => {
  if (entry !== undefined && entry.order === undefined) Object.assign(entry, { at: Date.now(), order: ++order })
}

const RecordingWebSocket = globalThis.WebSocket

class TimedWebSocket extends RecordingWebSocket {
  #log

  constructor(url, ...rest) {
    super(url, ...rest)
    this.#log = wireLogFor(url)
    // Runs after the recorder's own listener (registered first), so the frame it pushed is the last one.
    this.addEventListener('message', () => stamp(this.#log.received.at(-1)))
  }

  send(data, ...rest) {
    const result = super.send(data, ...rest)
    stamp(this.#log.sent.at(-1))
    return result
  }
}

globalThis.WebSocket = TimedWebSocket

const recordingFetch = globalThis.fetch

globalThis.fetch = async (input, init) => {
  const log = wireLogFor(input instanceof Request ? input.url : input)
  // The recorder pushes its exchange before its first await, so it is the one at this index.
  const index = log.exchanges.length
  const answer = recordingFetch(input, init)
  const exchange = log.exchanges[index]
  stamp(exchange)
  if (exchange !== undefined) exchange.sentAt = exchange.at
  try {
    const response = await answer
    if (exchange !== undefined) exchange.answeredAt = Date.now()
    return response
  } catch (error) {
    if (exchange !== undefined) exchange.error = String(error?.cause?.code ?? error?.message ?? error)
    throw error
  }
}
