/**
 * Resets a store the way an operator does: livesync's 0.3 admin frame (`WSMessage.AdminResetRoomReq`) over a
 * 0.3 socket (`<url>/websocket?storeId=…&payload=…`), answered by `WSMessage.AdminResetRoomRes`.
 */
import { WebSocket } from 'ws'

import { transportUrl } from './sync-url.mjs'

export const resetStore = ({ url, storeId, authToken, adminSecret }) =>
  new Promise((resolve, reject) => {
    const params = new URLSearchParams({ storeId, payload: encodeURIComponent(JSON.stringify({ authToken })) })
    const socket = new WebSocket(`${transportUrl(url, 'ws')}/websocket?${params}`)
    const requestId = 'admin-reset'
    socket.once('error', reject)
    socket.once('open', () =>
      socket.send(JSON.stringify({ _tag: 'WSMessage.AdminResetRoomReq', requestId, adminSecret })),
    )
    socket.on('message', (data) => {
      const frame = JSON.parse(String(data))
      if (frame.requestId !== requestId) return
      socket.close(1000)
      if (frame._tag === 'WSMessage.AdminResetRoomRes') resolve()
      else reject(new Error(`admin reset refused: ${JSON.stringify(frame)}`))
    })
  })
