/**
 * Three stores on one storeId commit concurrently (creates, completes and deletes, interleaved with small
 * random pauses so pushes race); every store must end with the same todos and the server with every event once.
 * With several URLs the stores are spread over them round-robin (two server processes sharing a database).
 */
import { allSyncedTo, createTodo, describeStore, events, makeTodoStore } from '../lib/todo-store.mjs'
import { sleep, waitUntil } from '../lib/waiting.mjs'

const CLIENT_IDS = ['client-a', 'client-b', 'client-c']
const TODOS_PER_CLIENT = 50

/** Per client: 50 creates, every 5th todo completed, every 10th deleted: 65 events. */
const commitWorkload = async (store, clientId) => {
  for (let n = 0; n < TODOS_PER_CLIENT; n++) {
    const id = `${clientId}-${String(n).padStart(2, '0')}`
    createTodo(store, id)
    if (n % 5 === 4) store.commit(events.todoCompleted({ id }))
    if (n % 10 === 9) store.commit(events.todoDeleted({ id }))
    await sleep(Math.random() * 8)
  }
}

const EVENTS_PER_CLIENT = TODOS_PER_CLIENT + TODOS_PER_CLIENT / 5 + TODOS_PER_CLIENT / 10

export const converge = async ({ urls, storeId, authToken, syncWaitMs }) => {
  const stores = await Promise.all(
    CLIENT_IDS.map((clientId, i) => makeTodoStore({ url: urls[i % urls.length], storeId, authToken, clientId })),
  )
  await Promise.all(stores.map((store, i) => commitWorkload(store, CLIENT_IDS[i])))

  const totalEvents = EVENTS_PER_CLIENT * CLIENT_IDS.length
  const converged = await waitUntil(() => allSyncedTo(stores, totalEvents), { timeoutMs: syncWaitMs })
  return {
    converged,
    totalEvents,
    stores: await Promise.all(
      stores.map(async (store, i) => ({ url: urls[i % urls.length], ...(await describeStore(store)) })),
    ),
  }
}
