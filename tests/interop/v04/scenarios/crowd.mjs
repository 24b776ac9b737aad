/**
 * Many 0.4.0 clients on one store through one address (a load balancer in front of several server processes, or
 * one server), each creating its todos, while the test may kill a server process under them. The 0.4.0 twin of
 * `../../scenarios/crowd.mjs`, over `makeWsSync` or `makeHttpSync` (`--transport`).
 *
 * - `--clients` clients run in this process, numbered from `--first-client`; a test spreads clients over Node
 *   processes (each client's SQLite lives in its process's WebAssembly heap), and `--start-file` makes them all
 *   start committing at one signal.
 * - Each client syncs through a path of its own (`<url>/<clientId>`: any path is the sync endpoint), so its wire
 *   log is its own.
 * - `--pace-ms` is the mean pause between a client's todos (0: it commits them all at once). With `--through-leader`
 *   a client commits its next todo only once its leader has taken the last one: when other clients' events reach a
 *   0.4.0 client while its app is still committing, its session and leader can lose a commit (the race fixed
 *   upstream in livestorejs/livestore#1530).
 * - Once its stores are up (booted and past their first pull), the process writes `--ready-file`.
 * - With `--report-file`, the stores report once they hold the head the test wrote there (where the server's
 *   head settled, and how many todos that log creates); without, once they hold `--total-events`; or when the
 *   wait runs out.
 *
 * Each store reports what its user sees and what crossed its wire: every push and pull it sent with how it was
 * answered (`requests`, see `../lib/request-log.mjs`), the unanswered ones, the connections it opened and closed
 * itself. `--wire-dir` also writes each client's whole wire log there (`<clientId>.json`), and `--stored-log` adds
 * the store's log as the server holds it, read over a plain socket after the stores reported.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { sleep, waitUntil } from '../../lib/waiting.mjs'
import { wireLogFor } from '../lib/client-runtime.mjs'
import { pullStoredLog } from '../lib/raw-puller.mjs'
import { requestSummary, selfClosedConnections, unansweredRequests } from '../lib/request-log.mjs'
import { syncUrl, transportUrl } from '../lib/sync-url.mjs'
import { allSyncedTo, createTodo, describeStore, makeTodoStore, readEventlog, syncProgress } from '../lib/todo-store.mjs'
import { failuresByTag, pullStreamBreaks } from '../lib/wire.mjs'

const LEADER_WAIT_MS = 5000

const clientIdOf = (n) => `client-${String(n).padStart(2, '0')}`

/** The store's shutdown reason if LiveStore shut it down already, else null. */
const shutdownSoFar = (store) => Promise.race([store.shutdownReason, sleep(0).then(() => null)])

export const crowd = async ({
  urls: [url],
  transport,
  storeId,
  authToken,
  syncWaitMs,
  clients,
  firstClient,
  todosPerClient,
  totalEvents,
  readyFile,
  startFile,
  reportFile,
  paceMs,
  throughLeader,
  wireDir,
  storedLog,
}) => {
  const begunAt = Date.now()
  await import('../lib/wire-timeline.mjs')
  const clientIds = Array.from({ length: clients }, (_, n) => clientIdOf(firstClient + n))
  const clientUrls = clientIds.map((clientId) => `${transportUrl(url, transport)}/${clientId}`)
  const stores = await Promise.all(
    clientIds.map((clientId, n) => makeTodoStore({ url: clientUrls[n], transport, storeId, authToken, clientId })),
  )
  if (readyFile) writeFileSync(readyFile, clientIds.join(' '))
  if (startFile) await waitUntil(() => existsSync(startFile), { timeoutMs: syncWaitMs })
  const startedAt = Date.now()
  const committedAt = await Promise.all(
    stores.map(async (store, n) => {
      for (let todo = 0; todo < todosPerClient; todo++) {
        createTodo(store, `${clientIds[n]}-${String(todo).padStart(3, '0')}`)
        if (throughLeader) {
          const taken = async () => (await syncProgress(store)).sessionPending === 0
          await waitUntil(taken, { timeoutMs: LEADER_WAIT_MS, intervalMs: 1 })
        }
        if (paceMs > 0) await sleep(paceMs * (0.5 + Math.random()))
      }
      return Date.now() - startedAt
    }),
  )
  // The report file holds `<head> [<todos>]`: the head the server settled at, and the todos its log creates.
  const report = () => (reportFile && existsSync(reportFile) ? readFileSync(reportFile, 'utf8').split(' ').map(Number) : null)
  const reported = () => report()?.[0] ?? null
  const synced = (head, todoCount = head) => allSyncedTo(stores, head, todoCount)
  // Racing 0.4.0 clients rebase their whole pending log on every push they lose, so on a loaded machine their
  // pushes can take most of a minute: wait for the test's report file until 6/8 of the hard timeout.
  const reportBy = begunAt + 6 * syncWaitMs
  await waitUntil(async () => reported() !== null || (!reportFile && (await synced(totalEvents))), {
    timeoutMs: Math.max(reportBy - Date.now(), reportFile ? 0 : 3 * syncWaitMs),
  })
  if (reported() !== null) await waitUntil(() => synced(...report()), { timeoutMs: syncWaitMs })
  const reportedAt = Date.now() - startedAt

  const wires = clientUrls.map((clientUrl) => wireLogFor(syncUrl(clientUrl, storeId, { authToken }, transport)))
  if (wireDir) {
    mkdirSync(wireDir, { recursive: true })
    wires.forEach((wire, n) => writeFileSync(join(wireDir, `${clientIds[n]}.json`), JSON.stringify(wire)))
  }
  return {
    converged: await synced(totalEvents),
    totalEvents,
    reportedHead: reported(),
    startedAt,
    reportedAt,
    storedLog: storedLog ? await pullStoredLog({ url, storeId, authToken }) : undefined,
    stores: await Promise.all(
      stores.map(async (store, n) => {
        const wire = wires[n]
        const { todos, ...progress } = await describeStore(store)
        const requests = requestSummary(wire)
        const pulls = requests.filter((request) => request.pull)
        return {
          ...progress,
          committedAt: committedAt[n],
          shutdown: await shutdownSoFar(store),
          todoCount: todos.length,
          todoIds: todos.map((todo) => todo.id),
          timesCreated: Math.max(0, ...todos.map((todo) => todo.times_created)),
          appliedTwice: todos.filter((todo) => todo.times_created > 1).map((todo) => `${todo.id} x${todo.times_created}`),
          eventlog: await readEventlog(store),
          connectionsOpened: wire.opens,
          selfClosed: selfClosedConnections(wire),
          failures: failuresByTag(wire),
          pullBreaks: pullStreamBreaks(wire),
          unanswered: unansweredRequests(requests),
          pullsSent: pulls.length,
          // On ws: the connections the client sent a pull on (after a reconnect it must pull again).
          pulledOnConnections: [...new Set(pulls.filter((pull) => pull.via.startsWith('connection')).map((pull) => Number(pull.via.split(' ')[1])))],
          lastPullAt: pulls.at(-1)?.at ?? null,
          reportedAtEpoch: Date.now(),
          // Every push, and every pull that carried events or did not end well: enough to follow the client.
          requests: requests.filter(
            (request) => request.push || request.entries.length > 0 || request.breaks.length > 0 || !['ok', 'open'].includes(request.outcome),
          ),
        }
      }),
    ),
  }
}
