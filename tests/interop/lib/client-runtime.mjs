/**
 * Node environment for the unmodified LiveStore 0.3.1 client. Import this before anything from LiveStore.
 *
 * - Node 20 has no global WebSocket; the client constructs `new globalThis.WebSocket(url)`, so we provide `ws`.
 *   The provided class only records what crosses each socket (opens, drops, sent and received frames), so
 *   scenarios can assert on the wire without patching the client.
 * - LiveStore's logger and the client's diagnostics write to stdout; the harness reserves stdout for the one
 *   JSON result line, so console output is routed to stderr.
 */
import { WebSocket as NodeWebSocket } from 'ws'

for (const method of ['log', 'info', 'debug', 'warn']) {
  console[method] = (...args) => console.error(...args)
}

const wireLogs = new Map()

/** Everything recorded for sockets opened to `url` (the full URL, see `syncSocketUrl`), in order. */
export const wireLogFor = (url) => {
  let log = wireLogs.get(url)
  if (log === undefined) {
    log = { opens: 0, drops: 0, sent: [], received: [] }
    wireLogs.set(url, log)
  }
  return log
}

/** The frames with `_tag` that arrived over the logged sockets, in order. */
export const receivedFrames = (log, tag) => log.received.map(({ frame }) => frame).filter((frame) => frame._tag === tag)

/** The frames with `_tag` the client sent over the logged sockets, in order. */
export const sentFrames = (log, tag) => log.sent.map(({ frame }) => frame).filter((frame) => frame._tag === tag)

const parseFrame = (data) => {
  try {
    return JSON.parse(String(data))
  } catch {
    return { unparsable: String(data) }
  }
}

class RecordingWebSocket extends NodeWebSocket {
  #log

  constructor(url, ...rest) {
    super(url, ...rest)
    const log = wireLogFor(String(url))
    this.#log = log
    let opened = false
    this.addEventListener('open', () => {
      opened = true
      log.opens += 1
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
    this.#log.sent.push({ connection: this.#log.opens, frame: parseFrame(data) })
    return super.send(data, ...rest)
  }
}

globalThis.WebSocket = RecordingWebSocket
