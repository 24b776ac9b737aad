/**
 * The 0.4.0 half of a store shared by two client generations: a ws and an http client commit todos while the
 * test runs the 0.3.1 half (`../../scenarios/mixed-generations.mjs`) on the same storeId in another process.
 * Each half waits until its stores hold `totalEvents`, everything both generations committed.
 *
 * Each 0.4.0 client commits its todos at once: when events from other clients reach a 0.4.0 client while its app
 * is still committing, its session and leader can lose track of a commit and push it twice or out of order (this
 * matches the race fixed upstream in livestorejs/livestore#1530), which the 0.3.1 clients here would make frequent.
 */
import { waitUntil } from '../../lib/waiting.mjs'
import { allSyncedTo, createTodo, describeStore, makeTodoStore, readEventlog } from '../lib/todo-store.mjs'

const TODOS_PER_CLIENT = 20

const CLIENTS = [
  { clientId: 'v04-ws', transport: 'ws' },
  { clientId: 'v04-http', transport: 'http' },
]

export const mixed = async ({ urls: [url], storeId, authToken, totalEvents, syncWaitMs }) => {
  const stores = await Promise.all(
    CLIENTS.map(({ clientId, transport }) => makeTodoStore({ url, transport, storeId, authToken, clientId })),
  )
  stores.forEach((store, i) => {
    for (let n = 0; n < TODOS_PER_CLIENT; n++) createTodo(store, `${CLIENTS[i].clientId}-${String(n).padStart(2, '0')}`)
  })
  const converged = await waitUntil(() => allSyncedTo(stores, totalEvents, totalEvents), { timeoutMs: syncWaitMs })
  return {
    converged,
    stores: await Promise.all(
      stores.map(async (store, i) => ({
        transport: CLIENTS[i].transport,
        ...(await describeStore(store)),
        eventlog: await readEventlog(store),
      })),
    ),
  }
}
