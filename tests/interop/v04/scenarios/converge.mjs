/**
 * Three stores on one storeId commit concurrently over the chosen transport (creates, completes and deletes), so
 * pushes race: some are answered `ServerAheadError`, after which the client waits for its pull, rebases and
 * pushes again. Every store must end with the same todos and the same eventlog, and the server with every event
 * once. With several URLs the stores are spread over them round-robin.
 *
 * Over ws each client pauses randomly between todos, so commits and rebases interleave. Over http each client
 * commits its whole workload at once: when other clients' events reach a 0.4.0 client while its app is still
 * committing, its session and leader can lose track of a commit and push it twice or out of order (this matches
 * the race fixed upstream in livestorejs/livestore#1530). Over http, where every pull waits for the next poll,
 * that window is wide enough to hit often; the pushes still race, so rebases still happen.
 */
import { sleep, waitUntil } from '../../lib/waiting.mjs'
import { wireLogFor } from '../lib/client-runtime.mjs'
import { syncUrl, transportUrl } from '../lib/sync-url.mjs'
import { allSyncedTo, createTodo, describeStore, events, makeTodoStore, readEventlog } from '../lib/todo-store.mjs'
import { failuresByTag } from '../lib/wire.mjs'

const CLIENT_IDS = ['client-a', 'client-b', 'client-c']
const TODOS_PER_CLIENT = 50

/** Per client: 50 creates, every 5th todo completed, every 10th deleted: 65 events. */
const commitWorkload = async (store, clientId, pauses) => {
  for (let n = 0; n < TODOS_PER_CLIENT; n++) {
    const id = `${clientId}-${String(n).padStart(2, '0')}`
    createTodo(store, id)
    if (n % 5 === 4) store.commit(events.todoCompleted({ id }))
    if (n % 10 === 9) store.commit(events.todoDeleted({ id }))
    if (pauses) await sleep(Math.random() * 8)
  }
}

const EVENTS_PER_CLIENT = TODOS_PER_CLIENT + TODOS_PER_CLIENT / 5 + TODOS_PER_CLIENT / 10

export const converge = async ({ urls, transport, storeId, authToken, syncWaitMs }) => {
  // Each client syncs through its own path (any path is the sync endpoint), so each has its own wire log.
  const clients = CLIENT_IDS.map((clientId, i) => ({
    clientId,
    url: `${transportUrl(urls[i % urls.length], transport)}/${clientId}`,
  }))
  const stores = await Promise.all(
    clients.map(({ clientId, url }) => makeTodoStore({ url, transport, storeId, authToken, clientId })),
  )
  await Promise.all(stores.map((store, i) => commitWorkload(store, CLIENT_IDS[i], transport === 'ws')))

  const totalEvents = EVENTS_PER_CLIENT * CLIENT_IDS.length
  const totalTodos = TODOS_PER_CLIENT * CLIENT_IDS.length
  const converged = await waitUntil(() => allSyncedTo(stores, totalEvents, totalTodos), { timeoutMs: syncWaitMs })
  return {
    converged,
    totalEvents,
    stores: await Promise.all(
      stores.map(async (store, i) => ({
        server: urls[i % urls.length],
        ...(await describeStore(store)),
        eventlog: await readEventlog(store),
        failures: failuresByTag(wireLogFor(syncUrl(clients[i].url, storeId, { authToken }, transport))),
      })),
    ),
  }
}
