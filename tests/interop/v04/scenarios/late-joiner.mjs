/**
 * A store that already holds 1,050 events (seeded with raw 0.4.0 push requests) gets a fresh store over the
 * chosen transport, which must catch up completely through the pages of its first pull.
 */
import { waitUntil } from '../../lib/waiting.mjs'
import { wireLogFor } from '../lib/client-runtime.mjs'
import { seedTodos } from '../lib/raw-pusher.mjs'
import { syncUrl } from '../lib/sync-url.mjs'
import { describeStore, isSyncedTo, makeTodoStore } from '../lib/todo-store.mjs'
import { firstPullPages } from '../lib/wire.mjs'

const SEEDED_TODOS = 1050

export const lateJoiner = async ({ urls: [url], transport, storeId, authToken, syncWaitMs }) => {
  const ids = Array.from({ length: SEEDED_TODOS }, (_, n) => `seed-${String(n).padStart(4, '0')}`)
  await seedTodos({ url, storeId, authToken, ids })

  const joinedAt = Date.now()
  const store = await makeTodoStore({ url, transport, storeId, authToken, clientId: 'late-joiner' })
  const caughtUp = await waitUntil(() => isSyncedTo(store, SEEDED_TODOS, SEEDED_TODOS), {
    timeoutMs: syncWaitMs,
  })
  const catchUpMs = Date.now() - joinedAt

  return {
    caughtUp,
    catchUpMs,
    seededTodos: SEEDED_TODOS,
    firstPullPages: firstPullPages(wireLogFor(syncUrl(url, storeId, { authToken }, transport))),
    store: await describeStore(store),
  }
}
