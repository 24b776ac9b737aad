/**
 * The 0.3.1 half of a store shared by two client generations: two `makeCfSync` clients commit todos while the
 * test runs the 0.4.0 half (`v04/scenarios/mixed.mjs`) on the same storeId in another process. Each half
 * waits until its stores hold `totalEvents`, everything both generations committed.
 */
import { allSyncedTo, createTodo, describeStore, makeTodoStore } from '../lib/todo-store.mjs'
import { sleep, waitUntil } from '../lib/waiting.mjs'

const CLIENT_IDS = ['v03-a', 'v03-b']
const TODOS_PER_CLIENT = 20

export const mixedGenerations = async ({ urls: [url], storeId, authToken, totalEvents, syncWaitMs }) => {
  const stores = await Promise.all(CLIENT_IDS.map((clientId) => makeTodoStore({ url, storeId, authToken, clientId })))
  await Promise.all(
    stores.map(async (store, i) => {
      for (let n = 0; n < TODOS_PER_CLIENT; n++) {
        createTodo(store, `${CLIENT_IDS[i]}-${String(n).padStart(2, '0')}`)
        await sleep(Math.random() * 20)
      }
    }),
  )
  const converged = await waitUntil(() => allSyncedTo(stores, totalEvents), { timeoutMs: syncWaitMs })
  return { converged, stores: await Promise.all(stores.map(describeStore)) }
}
