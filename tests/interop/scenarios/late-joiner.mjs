/**
 * A store that already holds 1,050 events (seeded over a raw socket) gets a fresh store, which must catch up
 * completely through the server's chunked pull answer.
 */
import { receivedFrames, wireLogFor } from '../lib/client-runtime.mjs'
import { seedTodos } from '../lib/raw-pusher.mjs'
import { syncSocketUrl } from '../lib/sync-url.mjs'
import { describeStore, isSyncedTo, makeTodoStore } from '../lib/todo-store.mjs'
import { waitUntil } from '../lib/waiting.mjs'

const SEEDED_TODOS = 1050

export const lateJoiner = async ({ urls: [url], storeId, authToken, syncWaitMs }) => {
  const ids = Array.from({ length: SEEDED_TODOS }, (_, n) => `seed-${String(n).padStart(4, '0')}`)
  await seedTodos({ url, storeId, authToken, ids })

  const joinedAt = Date.now()
  const store = await makeTodoStore({ url, storeId, authToken, clientId: 'late-joiner' })
  const caughtUp = await waitUntil(() => isSyncedTo(store, SEEDED_TODOS), { timeoutMs: syncWaitMs })
  const catchUpMs = Date.now() - joinedAt

  const pullAnswers = receivedFrames(wireLogFor(syncSocketUrl(url, storeId, { authToken })), 'WSMessage.PullRes')
    .filter((frame) => frame.requestId.context === 'pull')
    .map((frame) => ({ events: frame.batch.length, remaining: frame.remaining }))

  return { caughtUp, catchUpMs, seededTodos: SEEDED_TODOS, pullAnswers, store: await describeStore(store) }
}
