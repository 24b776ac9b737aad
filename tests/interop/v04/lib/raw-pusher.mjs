/**
 * Seeds a store quickly over a plain WebSocket with the 0.4.0 client's own frames: the same URL, Effect RPC
 * `Request` envelopes for `SyncWsRpc.Push` with the payload keys in the client's order, 100 events per request
 * like its push splitting, each request answered by an `Exit` before the next goes out.
 */
import { WebSocket } from 'ws'

import { syncUrl } from './sync-url.mjs'

const BATCH_SIZE = 100

const openSocket = (socketUrl) =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(socketUrl)
    socket.once('open', () => resolve(socket))
    socket.once('error', reject)
  })

/** Pushes `TodoCreated` events for `ids` onto an empty store, waiting for each request's `Exit`. */
export const seedTodos = async ({ url, storeId, authToken, ids }) => {
  const payload = { authToken }
  const socket = await openSocket(syncUrl(url, storeId, payload, 'ws'))
  const waiting = new Map()
  socket.on('message', (data) => {
    const message = JSON.parse(String(data))
    const pending = waiting.get(message.requestId)
    if (message._tag !== 'Exit' || pending === undefined) return
    if (message.exit._tag === 'Success') pending.resolve()
    else pending.reject(new Error(`seed push rejected: ${JSON.stringify(message.exit)}`))
  })

  try {
    for (let start = 0; start < ids.length; start += BATCH_SIZE) {
      const id = String(start / BATCH_SIZE)
      const batch = ids.slice(start, start + BATCH_SIZE).map((todoId, offset) => ({
        name: 'v1.TodoCreated',
        args: { id: todoId, text: `todo ${todoId}` },
        seqNum: start + offset + 1,
        parentSeqNum: start + offset,
        clientId: 'seeder',
        sessionId: 'seeder-session',
      }))
      const exited = new Promise((resolve, reject) => waiting.set(id, { resolve, reject }))
      socket.send(
        JSON.stringify({
          _tag: 'Request',
          id,
          tag: 'SyncWsRpc.Push',
          payload: { storeId, payload, batch, backendId: { _tag: 'None' } },
          headers: [],
        }),
      )
      await exited
    }
  } finally {
    socket.close(1000)
  }
}
