/**
 * Reads a store's whole log as the server stored it, over a plain WebSocket (not a LiveStore client, and not
 * recorded in any client's wire log): one non-live `SyncWsRpc.Pull` from the root, framed as the 0.4.0 client
 * frames it (an `Ack` after each Chunk), every page up to its `Exit`.
 */
import { WebSocket } from 'ws'

import { syncUrl } from './sync-url.mjs'

const TIMEOUT_MS = 30000

/** Every stored event of `storeId`, in the order served, as `{ seqNum, name, args }`. */
export const pullStoredLog = ({ url, storeId, authToken }) =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(syncUrl(url, storeId, { authToken }, 'ws'))
    const requestId = 'stored-log'
    const stored = []
    const fail = (error) => {
      clearTimeout(timer)
      socket.terminate()
      reject(error)
    }
    const timer = setTimeout(() => fail(new Error(`no Exit for the stored log's pull within ${TIMEOUT_MS} ms`)), TIMEOUT_MS)
    socket.once('error', fail)
    socket.once('open', () =>
      socket.send(
        JSON.stringify({
          _tag: 'Request',
          id: requestId,
          tag: 'SyncWsRpc.Pull',
          payload: { storeId, payload: { authToken }, live: false, cursor: { _tag: 'None' } },
          headers: [],
        }),
      ),
    )
    socket.on('message', (data) => {
      const message = JSON.parse(String(data))
      if (message.requestId !== requestId) return
      if (message._tag === 'Chunk') {
        for (const { batch } of message.values) {
          for (const { eventEncoded } of batch) {
            const { seqNum, name, args } = eventEncoded
            stored.push({ seqNum, name, args })
          }
        }
        socket.send(JSON.stringify({ _tag: 'Ack', requestId }))
      } else if (message._tag === 'Exit') {
        clearTimeout(timer)
        socket.close(1000)
        if (message.exit._tag === 'Success') resolve(stored)
        else reject(new Error(`the stored log's pull failed: ${JSON.stringify(message.exit)}`))
      }
    })
  })
