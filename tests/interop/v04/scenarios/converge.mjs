/**
 * Three stores on one storeId commit concurrently over the chosen transport (creates, completes and deletes), so
 * pushes race: some are answered `ServerAheadError`, after which the client waits for its pull, rebases and
 * pushes again. Every store must end with the same eventlog, and the server with every event once; each pull
 * stream must carry the events without a gap or a repeat. With several URLs the stores are spread over them
 * round-robin. Once they agree, a fourth store joins and pulls the whole log: what a user who opens the app then
 * (or reloads it) sees.
 *
 * When other clients' events reach a 0.4.0 client while its app is still committing, its session and leader can
 * lose track of a commit and push it twice or out of order (fixed upstream in livestorejs/livestore#1530, after
 * 0.4.0). Over ws each client therefore commits the next event only once its leader has taken the last one
 * (`sessionPending` 0), and pauses randomly between todos: the leaders' pushes to the server still race and rebase.
 * Over http each client commits its whole workload at once, and every pull waits for the next poll, which keeps
 * that window closed. Even so, a 0.4.0 client's own tables can now and then disagree with its own eventlog after
 * a rebase, a client can still push one of its events twice, and one whose app keeps its leader busy can close
 * its own connection on its ping watchdog and never pull again. The report carries what proves each of these
 * from the client's own wire log (its acknowledgements, its rebases, its own closes), and the store's log as
 * the server stored it (`storedLog`, read over a plain socket), so the tests can tell the clients' faults apart
 * from the server's part (`v04_client_faults` in `expectations.py`).
 */
import { sleep, waitUntil } from '../../lib/waiting.mjs'
import { wireLogFor } from '../lib/client-runtime.mjs'
import { syncUrl, transportUrl } from '../lib/sync-url.mjs'
import {
  allSyncedTo,
  createTodo,
  describeStore,
  events,
  makeTodoStore,
  readEventlog,
  syncProgress,
} from '../lib/todo-store.mjs'
import { pullStoredLog } from '../lib/raw-puller.mjs'
import {
  acknowledgedEvents,
  failuresByTag,
  pullStreamBreaks,
  rebasedEvents,
  selfClosedAfterAnsweredPing,
} from '../lib/wire.mjs'

const CLIENT_IDS = ['client-a', 'client-b', 'client-c']
const TODOS_PER_CLIENT = 50
const LEADER_WAIT_MS = 5000

/** Commits, then (over ws) waits until the store's leader has taken the commit from its session. */
const commitThroughLeader = async (store, commit, waitForLeader) => {
  commit()
  if (waitForLeader) {
    const taken = async () => (await syncProgress(store)).sessionPending === 0
    await waitUntil(taken, { timeoutMs: LEADER_WAIT_MS, intervalMs: 1 })
  }
}

/** Per client: 50 creates, every 5th todo completed, every 10th deleted: 65 events. */
const commitWorkload = async (store, clientId, overWs) => {
  for (let n = 0; n < TODOS_PER_CLIENT; n++) {
    const id = `${clientId}-${String(n).padStart(2, '0')}`
    await commitThroughLeader(store, () => createTodo(store, id), overWs)
    if (n % 5 === 4) await commitThroughLeader(store, () => store.commit(events.todoCompleted({ id })), overWs)
    if (n % 10 === 9) await commitThroughLeader(store, () => store.commit(events.todoDeleted({ id })), overWs)
    if (overWs) await sleep(Math.random() * 8)
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

  const lateUrl = `${transportUrl(urls[0], transport)}/client-late`
  const late = await makeTodoStore({ url: lateUrl, transport, storeId, authToken, clientId: 'client-late' })
  await waitUntil(() => allSyncedTo([late], totalEvents, totalTodos), { timeoutMs: syncWaitMs })

  const report = async (store, url, server) => {
    const wire = wireLogFor(syncUrl(url, storeId, { authToken }, transport))
    return {
      server,
      ...(await describeStore(store)),
      eventlog: await readEventlog(store),
      failures: failuresByTag(wire),
      pullBreaks: pullStreamBreaks(wire),
      acknowledged: acknowledgedEvents(wire),
      rebased: rebasedEvents(wire),
      selfClosed: selfClosedAfterAnsweredPing(wire),
    }
  }
  return {
    converged,
    totalEvents,
    // What the server stored, read past every LiveStore client: what the tests expect the stores to show.
    storedLog: await pullStoredLog({ url: urls[0], storeId, authToken }),
    stores: await Promise.all(stores.map((store, i) => report(store, clients[i].url, urls[i % urls.length]))),
    lateJoiner: await report(late, lateUrl, urls[0]),
  }
}
