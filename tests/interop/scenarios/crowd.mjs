/**
 * Many clients on one store through one address (a load balancer in front of several server processes), each
 * creating its todos at a steady pace, while the test may kill a server process under them.
 *
 * - `--clients` clients run in this process, numbered from `--first-client`. Each LiveStore client's in-memory
 *   SQLite lives in the process's WebAssembly heap, so a test spreads many clients over processes, and
 *   `--start-file` makes them all start committing at one signal.
 * - Each client connects through a path of its own (`<url>/<clientId>/websocket`: livesync, like the reference,
 *   serves any path ending in `/websocket`), so its wire log is its own.
 * - The stores report once they hold `--total-events` (what every client of the store commits together, in
 *   this process and others). A client whose push was lost with a killed process never gets there: the test
 *   then writes the head the server ended at into `--report-file`, and the stores report once they hold that,
 *   or once one of them has stopped moving.
 * - Once its todos are committed, each client keeps `<report-file>.<clientId>` saying whether it has anything
 *   left that it can push: the test reads the server's final head only once no client has. A quiet head alone
 *   does not say so: on a busy machine a client whose pushes were rejected may take seconds to rebase its
 *   pending events before it pushes again.
 *
 * Each store reports what its user sees and what crossed its wire: the connections it opened, the pushes never
 * answered, and whether any batch it received started past the end of the one before (a gap the client would
 * skip over for good).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'

import { wireLogFor } from '../lib/client-runtime.mjs'
import { syncSocketUrl } from '../lib/sync-url.mjs'
import { allSyncedTo, createTodo, describeStore, makeTodoStore, syncProgress } from '../lib/todo-store.mjs'
import { sleep, waitUntil } from '../lib/waiting.mjs'

const PAUSE_MS = 40

// A store that has not moved for this long is behind for good; one that still moves is only slow (six Node
// processes beside the servers on two cores apply events slowly), and is waited for.
const STALLED_MS = 10_000

/** Waits until every store holds `head`, or one of them has not moved for STALLED_MS. */
const untilSyncedOrStalled = async (stores, head) => {
  let last = null
  let movedAt = Date.now()
  await waitUntil(
    async () => {
      if (await allSyncedTo(stores, head)) return true
      const now = JSON.stringify(await Promise.all(stores.map(syncProgress)))
      if (now !== last) [last, movedAt] = [now, Date.now()]
      return Date.now() - movedAt >= STALLED_MS
    },
    { timeoutMs: Number.POSITIVE_INFINITY, intervalMs: 200 },
  )
}

const clientIdOf = (n) => `client-${String(n).padStart(2, '0')}`

/** Pushes never answered (the last one of a client that waits for it still; earlier ones a rebase abandoned). */
const unansweredPushes = (wire) => {
  const answered = new Set(
    wire.received
      .filter(({ frame }) => frame._tag === 'WSMessage.PushAck' || frame._tag === 'WSMessage.Error')
      .map(({ frame }) => frame.requestId),
  )
  return wire.sent
    .filter(({ frame }) => frame._tag === 'WSMessage.PushReq' && !answered.has(frame.requestId))
    .map(({ connection, frame }) => ({ connection, parentSeqNum: frame.batch[0].parentSeqNum }))
}

/** Whether a client can push nothing more: its events are all confirmed, or its last push was lost with the
 * socket it went out on (the 0.3.1 client waits for that answer without a deadline, and pushes nothing else). */
const doneSyncing = async (store, wire) => {
  const { pending, sessionPending } = await syncProgress(store)
  if (pending === 0 && sessionPending === 0) return true
  const lost = unansweredPushes(wire).at(-1)
  return lost !== undefined && lost.connection < wire.opens
}

/** Keeps `<reportFile>.<clientId>` saying whether each client is `doneSyncing`, until `stop()`. */
const reportDoneSyncing = (stores, wires, clientIds, reportFile) => {
  let running = true
  const writing = (async () => {
    while (running) {
      await Promise.all(
        stores.map(async (store, n) =>
          writeFileSync(`${reportFile}.${clientIds[n]}`, String(await doneSyncing(store, wires[n]))),
        ),
      )
      await sleep(200)
    }
  })()
  return async () => {
    running = false
    await writing
  }
}

/** Batches whose first event is not the one after the last event received before them. */
const gapsReceived = (wire) => {
  const gaps = []
  let last = null
  for (const { connection, frame } of wire.received) {
    if (frame._tag !== 'WSMessage.PullRes' || frame.batch.length === 0) continue
    const first = frame.batch[0].eventEncoded.seqNum
    if (last !== null && first > last + 1) gaps.push({ connection, after: last, first })
    last = Math.max(last ?? 0, frame.batch.at(-1).eventEncoded.seqNum)
  }
  return gaps
}

export const crowd = async ({
  urls: [url],
  storeId,
  authToken,
  syncWaitMs,
  clients,
  firstClient,
  todosPerClient,
  totalEvents,
  startFile,
  reportFile,
}) => {
  const clientIds = Array.from({ length: clients }, (_, n) => clientIdOf(firstClient + n))
  const stores = await Promise.all(
    clientIds.map((clientId) => makeTodoStore({ url: `${url}/${clientId}`, storeId, authToken, clientId })),
  )
  if (startFile) await waitUntil(() => existsSync(startFile), { timeoutMs: syncWaitMs })
  await Promise.all(
    stores.map(async (store, n) => {
      for (let todo = 0; todo < todosPerClient; todo++) {
        createTodo(store, `${clientIds[n]}-${String(todo).padStart(3, '0')}`)
        await sleep(PAUSE_MS * (0.5 + Math.random()))
      }
    }),
  )
  const wires = clientIds.map((clientId) => wireLogFor(syncSocketUrl(`${url}/${clientId}`, storeId, { authToken })))
  const stopReporting = reportFile ? reportDoneSyncing(stores, wires, clientIds, reportFile) : async () => {}
  const reported = () => (reportFile && existsSync(reportFile) ? Number(readFileSync(reportFile, 'utf8')) : null)
  await waitUntil(async () => reported() !== null || (await allSyncedTo(stores, totalEvents)), {
    timeoutMs: 3 * syncWaitMs,
  })
  if (reported() !== null) await untilSyncedOrStalled(stores, reported())
  await stopReporting()
  return {
    converged: await allSyncedTo(stores, totalEvents),
    totalEvents,
    stores: await Promise.all(
      stores.map(async (store, n) => {
        const wire = wires[n]
        const { todos, ...progress } = await describeStore(store)
        return {
          ...progress,
          todoCount: todos.length,
          todoIds: todos.map((todo) => todo.id),
          timesCreated: Math.max(0, ...todos.map((todo) => todo.times_created)),
          connectionsOpened: wire.opens,
          pushesAfterReconnecting: wire.sent.filter(
            ({ connection, frame }) => connection > 1 && frame._tag === 'WSMessage.PushReq',
          ).length,
          unansweredPushes: unansweredPushes(wire),
          gapsReceived: gapsReceived(wire),
          // What a failing run shows of where the client stopped: its last batches, as [connection, first, last].
          lastBatches: wire.received
            .filter(({ frame }) => frame._tag === 'WSMessage.PullRes' && frame.batch.length > 0)
            .slice(-3)
            .map(({ connection, frame }) => [connection, frame.batch[0].eventEncoded.seqNum, frame.batch.at(-1).eventEncoded.seqNum]),
        }
      }),
    ),
  }
}
