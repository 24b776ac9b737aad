/**
 * Records, byte for byte, what an unmodified LiveStore 0.3.1 client (`makeCfSync({ url })` in
 * `@livestore/adapter-node`) sends to a sync server, so `bench/verify_frames.py` can check that the
 * benchmark's raw load generator sends exactly the same frames. Uses the interop harness
 * (`tests/interop/lib`, whose `node_modules` must be installed) and prints one JSON line on stdout.
 *
 *   node bench/verify_frames.mjs --url ws://127.0.0.1:PORT --store-id ID --token TOKEN
 */
import '../tests/interop/lib/client-runtime.mjs'

import { parseArgs } from 'node:util'

import { sentFrames, wireLogFor } from '../tests/interop/lib/client-runtime.mjs'
import { syncSocketUrl } from '../tests/interop/lib/sync-url.mjs'
import { createTodo, isSyncedTo, makeTodoStore } from '../tests/interop/lib/todo-store.mjs'
import { sleep, waitUntil } from '../tests/interop/lib/waiting.mjs'

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    'store-id': { type: 'string' },
    token: { type: 'string' },
    'client-id': { type: 'string', default: 'bench-verify' },
  },
})

// The interop runtime records parsed frames; keep the raw text too, to compare bytes, not just values.
const RecordingWebSocket = globalThis.WebSocket
const raw = { urls: [], sent: [], extensions: [] }
globalThis.WebSocket = class RawRecordingWebSocket extends RecordingWebSocket {
  constructor(url, ...rest) {
    super(url, ...rest)
    raw.urls.push(String(url))
    this.addEventListener('open', () => raw.extensions.push(this.extensions))
  }

  send(data, ...rest) {
    raw.sent.push(String(data))
    return super.send(data, ...rest)
  }
}

const emit = (line, code) => process.stdout.write(`${JSON.stringify(line)}\n`, () => process.exit(code))
setTimeout(() => emit({ error: 'timed out after 60 s' }, 2), 60_000)

try {
  const { url, token } = values
  const storeId = values['store-id']
  const clientId = values['client-id']
  const store = await makeTodoStore({ url, storeId, authToken: token, clientId })
  // One event alone (a push of 1), then ten committed together (the client pushes them as it batches them).
  createTodo(store, 'todo-1')
  const first = await waitUntil(() => isSyncedTo(store, 1), { timeoutMs: 20_000 })
  for (let n = 2; n <= 11; n++) createTodo(store, `todo-${n}`)
  const all = await waitUntil(() => isSyncedTo(store, 11), { timeoutMs: 20_000 })
  await sleep(200)
  const log = wireLogFor(syncSocketUrl(url, storeId, { authToken: token }))
  await store.shutdownPromise?.()
  emit(
    {
      synced: first && all,
      clientId,
      sessionId: `${clientId}-session`,
      expectedUrl: syncSocketUrl(url, storeId, { authToken: token }),
      urls: raw.urls,
      extensions: raw.extensions,
      sent: raw.sent,
      recordedSentTags: log.sent.map(({ frame }) => frame._tag),
      recordedPushes: sentFrames(log, 'WSMessage.PushReq').length,
    },
    0,
  )
} catch (error) {
  emit({ error: String(error?.stack ?? error) }, 1)
}
