// The worker and Durable Object of LiveStore's todomvc-sync-cf example, unchanged in behaviour:
// `makeDurableObject` with logging `onPush` / `onPull` callbacks, and `makeWorker` with a `validatePayload`
// that checks `authToken` only when the client sends one.
import { makeDurableObject, makeWorker } from '@livestore/sync-cf/cf-worker'

export class WebSocketServer extends makeDurableObject({
  onPush: async (message) => {
    console.log('onPush', message.batch)
  },
  onPull: async (message) => {
    console.log('onPull', message)
  },
}) {}

export default makeWorker({
  validatePayload: (payload: any) => {
    if (payload?.authToken !== undefined && payload.authToken !== 'insecure-token-change-me') {
      throw new Error('Invalid auth token')
    }
  },
  enableCORS: true,
})
