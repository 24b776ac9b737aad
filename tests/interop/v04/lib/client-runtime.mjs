/**
 * Node environment for the unmodified LiveStore 0.4.0 clients. Import this before anything from LiveStore.
 *
 * - `makeWsSync` opens `new globalThis.WebSocket(url)` (Effect's `layerWebSocketConstructorGlobal`) and Node 20
 *   has no global WebSocket, so we provide `ws`. `makeHttpSync` goes through `globalThis.fetch`, looked up per
 *   request. Both are wrapped only to record what crosses the wire per URL (socket opens and frames; HTTP
 *   request bodies and their JSON replies), so scenarios can assert on the wire without patching the client.
 * - LiveStore's logger writes to stdout; the harness reserves stdout for the one JSON result line, so console
 *   output is routed to stderr.
 */
import { WebSocket as NodeWebSocket } from 'ws'

for (const method of ['log', 'info', 'debug', 'warn']) {
  console[method] = (...args) => console.error(...args)
}

const wireLogs = new Map()

/**
 * Everything recorded for the full URL `url` (see `syncUrl`), in order. On ws, `sent` and `received` hold
 * frames tagged with the connection they crossed (a sent frame also with `answeredFrom`, how many frames had
 * been received when it left), and `selfCloses` the connections the client closed itself while they were
 * open; on http, `exchanges` holds `{ request, replies }` per POST.
 */
export const wireLogFor = (url) => {
  // Keyed by the normalized URL: the http client requests `http://host:port/?…` for the base URL `http://host:port`.
  const key = new URL(String(url)).href
  let log = wireLogs.get(key)
  if (log === undefined) {
    log = { opens: 0, drops: 0, selfCloses: [], sent: [], received: [], exchanges: [] }
    wireLogs.set(key, log)
  }
  return log
}

const parseFrame = (data) => {
  try {
    return JSON.parse(String(data))
  } catch {
    return { unparsable: String(data) }
  }
}

class RecordingWebSocket extends NodeWebSocket {
  #log
  #connection

  constructor(url, ...rest) {
    super(url, ...rest)
    const log = wireLogFor(url)
    this.#log = log
    let opened = false
    this.addEventListener('open', () => {
      opened = true
      log.opens += 1
      this.#connection = log.opens
    })
    // Only established connections count as dropped; refused connection attempts also end in `close`.
    this.addEventListener('close', () => {
      if (opened) log.drops += 1
    })
    this.addEventListener('message', (event) => {
      log.received.push({ connection: log.opens, frame: parseFrame(event.data) })
    })
  }

  send(data, ...rest) {
    const log = this.#log
    log.sent.push({ connection: log.opens, answeredFrom: log.received.length, frame: parseFrame(data) })
    return super.send(data, ...rest)
  }

  close(...args) {
    if (this.readyState === NodeWebSocket.OPEN) this.#log.selfCloses.push(this.#connection)
    return super.close(...args)
  }
}

globalThis.WebSocket = RecordingWebSocket

const nodeFetch = globalThis.fetch

globalThis.fetch = async (input, init) => {
  const url = input instanceof Request ? input.url : input
  // Effect's HTTP client hands fetch the encoded request as bytes.
  const body = init?.body instanceof Uint8Array ? new TextDecoder().decode(init.body) : init?.body
  const exchange = { request: typeof body === 'string' ? parseFrame(body) : undefined, status: undefined, replies: [] }
  wireLogFor(url).exchanges.push(exchange)
  const response = await nodeFetch(input, init)
  // Both at once, so an exchange with a status is one whose whole reply was read.
  const replies = parseFrame(await response.clone().text())
  exchange.status = response.status
  exchange.replies = replies
  return response
}

/** The server messages with `_tag` received over the logged transport (ws frames or http reply arrays), in order. */
export const receivedMessages = (log, tag) =>
  [...log.received.map(({ frame }) => frame), ...log.exchanges.flatMap(({ replies }) => replies)].filter(
    (message) => message?._tag === tag,
  )

/** The client messages with `_tag` (e.g. `Request`) sent over the logged transport, in order. */
export const sentMessages = (log, tag) =>
  [...log.sent.map(({ frame }) => frame), ...log.exchanges.map(({ request }) => request)].filter(
    (message) => message?._tag === tag,
  )
