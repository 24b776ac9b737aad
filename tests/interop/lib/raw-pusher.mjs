/**
 * Seeds a store quickly over a plain WebSocket. The frames are byte-for-byte what the 0.3.1 client sends
 * (same URL encoding, same `PushReq` field order, batches of 50 like its leader), so the server cannot tell
 * the seeder from a real client.
 */
import { WebSocket } from 'ws'

import { syncSocketUrl } from './sync-url.mjs'

const BATCH_SIZE = 50

const openSocket = (socketUrl) =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(socketUrl)
    socket.once('open', () => resolve(socket))
    socket.once('error', reject)
  })

/** Pushes `TodoCreated` events for `ids` onto an empty store, waiting for each batch's `PushAck`. */
export const seedTodos = async ({ url, storeId, authToken, ids }) => {
  const socket = await openSocket(syncSocketUrl(url, storeId, { authToken }))
  const waiting = new Map()
  socket.on('message', (data) => {
    const frame = JSON.parse(String(data))
    const pending = waiting.get(frame.requestId)
    if (pending === undefined) return
    if (frame._tag === 'WSMessage.PushAck') pending.resolve()
    if (frame._tag === 'WSMessage.Error') pending.reject(new Error(`seed push rejected: ${frame.message}`))
  })

  try {
    for (let start = 0; start < ids.length; start += BATCH_SIZE) {
      const requestId = `seed-${start}`
      const batch = ids.slice(start, start + BATCH_SIZE).map((id, offset) => ({
        name: 'v1.TodoCreated',
        args: { id, text: `todo ${id}` },
        seqNum: start + offset + 1,
        parentSeqNum: start + offset,
        clientId: 'seeder',
        sessionId: 'seeder-session',
      }))
      const acknowledged = new Promise((resolve, reject) => waiting.set(requestId, { resolve, reject }))
      socket.send(JSON.stringify({ _tag: 'WSMessage.PushReq', requestId, batch }))
      await acknowledged
    }
  } finally {
    socket.close(1000)
  }
}
