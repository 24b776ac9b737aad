/**
 * A server process dies (SIGKILL) while real LiveStore clients sync through it, and comes back on the same
 * port; every client must end with every todo anyone committed, each created once.
 *
 * Unlike the scenarios of `scenario.mjs`, this one needs the test to act in the middle (kill and restart the
 * server), so it is its own runner and talks to the test over stdio, one JSON object per line:
 *
 *   node scenarios/crash-restart.mjs --mode idle|busy --url ws://A --url ws://B --store-id ID --token TOKEN
 *                                    [--timeout-ms MS]
 *
 *   stdout: {"control":"kill"}   kill A now, restart it on the same port, then answer
 *   stdin:  {"control":"restarted"}
 *   stdout: {"scenario":"crash-restart","elapsedMs":…,"result":{…}}  or  {"scenario":…,"error":…} (exit 1 or 2)
 *
 * Each client connects through its own path (`ws://A/<clientId>/websocket?…`; any path ending in /websocket
 * is the sync endpoint), so the wire log of each client is its own.
 *
 * - `busy`: `client-a1` and `client-a2` sync through A, `client-b` through B. Each commits 5 todos, then 30 more
 *   (one every 20 ms) during which A is killed (after ~200 ms) and restarted, then 5 once A is back.
 * - `idle`: `client-a` syncs through A, `client-b1` and `client-b2` through B. All commit 5 todos and sync; A is
 *   killed while its client is idle and the clients of B commit 10 each while A is down. Once `client-a` has
 *   reconnected by itself it commits 5 (its first push carries its stale parent: livesync answers with what it
 *   missed), then everyone commits 5 more.
 *
 * The 0.3.1 client reconnects by itself but never pulls again, so the clients of A learn what they missed
 * only from livesync's answer to their first push on the new connection.
 */
import '../lib/client-runtime.mjs'

import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'

import { wireLogFor } from '../lib/client-runtime.mjs'
import { syncSocketUrl } from '../lib/sync-url.mjs'
import { allSyncedTo, createTodo, describeStore, makeTodoStore } from '../lib/todo-store.mjs'
import { sleep, waitUntil } from '../lib/waiting.mjs'

const BEFORE = 5
const DURING = 30
const AFTER = 5
const COMMIT_EVERY_MS = 20
const KILL_AFTER_MS = 200

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'busy' },
    url: { type: 'string', multiple: true },
    'store-id': { type: 'string' },
    token: { type: 'string' },
    'timeout-ms': { type: 'string', default: '90000' },
  },
})

let emitted = false
const writeLine = (line) => new Promise((resolve) => process.stdout.write(`${JSON.stringify(line)}\n`, resolve))
const emit = (line, exitCode) => {
  if (emitted) return
  emitted = true
  process.stdout.write(`${JSON.stringify(line)}\n`, () => process.exit(exitCode))
}

const controlLines = createInterface({ input: process.stdin })
const waitForControl = (expected) =>
  new Promise((resolve, reject) => {
    const onLine = (line) => {
      let message
      try {
        message = JSON.parse(line)
      } catch {
        return
      }
      if (message.control === expected) {
        controlLines.off('line', onLine)
        resolve(message)
      }
    }
    controlLines.on('line', onLine)
    controlLines.once('close', () => reject(new Error(`stdin closed before ${expected}`)))
  })

const commitSeries = async (store, clientId, phase, count, pauseMs = 0) => {
  for (let n = 0; n < count; n++) {
    createTodo(store, `${clientId}-${phase}-${String(n).padStart(2, '0')}`)
    if (pauseMs) await sleep(pauseMs)
  }
}

/** Per connection: what the client sent and what the server answered, compactly (for failure reports). */
const describeConnections = (wire) =>
  Array.from({ length: wire.opens }, (_, index) => {
    const connection = index + 1
    const sent = wire.sent.filter((entry) => entry.connection === connection).map(({ frame }) => frame)
    const received = wire.received.filter((entry) => entry.connection === connection).map(({ frame }) => frame)
    const pushes = sent.filter((frame) => frame._tag === 'WSMessage.PushReq')
    return {
      connection,
      pullRequests: sent.filter((frame) => frame._tag === 'WSMessage.PullReq').length,
      pushes: pushes.map((frame) => `${frame.batch[0].parentSeqNum}+${frame.batch.length}`),
      acks: received.filter((frame) => frame._tag === 'WSMessage.PushAck').length,
      errors: received.filter((frame) => frame._tag === 'WSMessage.Error').map((frame) => frame.message),
      eventsReceived: received
        .filter((frame) => frame._tag === 'WSMessage.PullRes')
        .flatMap((frame) => frame.batch.map(({ eventEncoded }) => eventEncoded.seqNum)),
    }
  })

const openClients = (plan, storeId, authToken) =>
  Promise.all(
    plan.map(async ({ clientId, server }) => {
      const url = `${server}/${clientId}`
      const store = await makeTodoStore({ url, storeId, authToken, clientId })
      return { clientId, url, store, wire: wireLogFor(syncSocketUrl(url, storeId, { authToken })) }
    }),
  )

const report = async (clients, { steps, timings, total }) => ({
  steps,
  timings,
  totalEvents: total,
  wire: clients.map(({ clientId, wire }) => ({
    clientId,
    connectionsOpened: wire.opens,
    drops: wire.drops,
    connections: describeConnections(wire),
  })),
  stores: await Promise.all(clients.map(async ({ store, url }) => ({ url, ...(await describeStore(store)) }))),
})

/** True once the client's `connection`-th connection got a Pong: the server serves that socket. */
const servedOn = (wire, connection) =>
  wire.opens >= connection &&
  wire.received.some((entry) => entry.connection === connection && entry.frame._tag === 'WSMessage.Pong')

const busy = async ({ urls: [killedUrl, survivorUrl], storeId, authToken, syncWaitMs }) => {
  const clients = await openClients(
    [
      { clientId: 'client-a1', server: killedUrl },
      { clientId: 'client-a2', server: killedUrl },
      { clientId: 'client-b', server: survivorUrl },
    ],
    storeId,
    authToken,
  )
  const stores = clients.map(({ store }) => store)
  const steps = {}
  const timings = {}

  for (const { store, clientId } of clients) await commitSeries(store, clientId, 'before', BEFORE)
  steps.syncedBefore = await waitUntil(() => allSyncedTo(stores, BEFORE * clients.length), { timeoutMs: syncWaitMs })

  const committing = Promise.all(
    clients.map(({ store, clientId }) => commitSeries(store, clientId, 'during', DURING, COMMIT_EVERY_MS)),
  )
  await sleep(KILL_AFTER_MS)
  const killRequestedAt = Date.now()
  await writeLine({ control: 'kill' })
  await waitForControl('restarted')
  timings.serverDownMs = Date.now() - killRequestedAt
  await committing

  for (const { store, clientId } of clients) await commitSeries(store, clientId, 'after', AFTER)
  const total = (BEFORE + DURING + AFTER) * clients.length
  const convergeStartedAt = Date.now()
  steps.converged = await waitUntil(() => allSyncedTo(stores, total), { timeoutMs: syncWaitMs })
  timings.convergedAfterRestartMs = Date.now() - convergeStartedAt
  timings.sinceKillMs = Date.now() - killRequestedAt
  return report(clients, { steps, timings, total })
}

const OFFLINE_COMMITS = 10

const idle = async ({ urls: [killedUrl, survivorUrl], storeId, authToken, syncWaitMs }) => {
  const clients = await openClients(
    [
      { clientId: 'client-a', server: killedUrl },
      { clientId: 'client-b1', server: survivorUrl },
      { clientId: 'client-b2', server: survivorUrl },
    ],
    storeId,
    authToken,
  )
  const [killedClient, ...survivors] = clients
  const stores = clients.map(({ store }) => store)
  const steps = {}
  const timings = {}

  for (const { store, clientId } of clients) await commitSeries(store, clientId, 'before', BEFORE)
  let head = BEFORE * clients.length
  steps.syncedBefore = await waitUntil(() => allSyncedTo(stores, head), { timeoutMs: syncWaitMs })

  const killRequestedAt = Date.now()
  await writeLine({ control: 'kill' })
  for (const { store, clientId } of survivors) await commitSeries(store, clientId, 'during', OFFLINE_COMMITS)
  head += OFFLINE_COMMITS * survivors.length
  steps.survivorsSyncedWhileDown = await waitUntil(() => allSyncedTo(survivors.map((c) => c.store), head), {
    timeoutMs: syncWaitMs,
  })
  await waitForControl('restarted')
  timings.serverDownMs = Date.now() - killRequestedAt
  steps.reconnected = await waitUntil(() => servedOn(killedClient.wire, 2), { timeoutMs: syncWaitMs })
  timings.reconnectedAfterKillMs = Date.now() - killRequestedAt

  await commitSeries(killedClient.store, killedClient.clientId, 'back', AFTER)
  head += AFTER
  steps.healed = await waitUntil(() => allSyncedTo(stores, head), { timeoutMs: syncWaitMs })
  timings.healedAfterKillMs = Date.now() - killRequestedAt

  for (const { store, clientId } of clients) await commitSeries(store, clientId, 'after', AFTER)
  head += AFTER * clients.length
  steps.converged = await waitUntil(() => allSyncedTo(stores, head), { timeoutMs: syncWaitMs })
  timings.sinceKillMs = Date.now() - killRequestedAt
  return report(clients, { steps, timings, total: head })
}

const MODES = { busy, idle }

const timeoutMs = Number(values['timeout-ms'])
const mode = MODES[values.mode]
if (mode === undefined || values.url === undefined || values.url.length !== 2 || values['store-id'] === undefined) {
  emit({ scenario: 'crash-restart', error: 'usage: crash-restart.mjs --mode idle|busy --url KILLED --url SURVIVOR --store-id …' }, 1)
} else {
  setTimeout(() => emit({ scenario: 'crash-restart', error: `hard timeout after ${timeoutMs} ms` }, 2), timeoutMs)
  const startedAt = Date.now()
  mode({
    urls: values.url,
    storeId: values['store-id'],
    authToken: values.token,
    syncWaitMs: Math.floor(timeoutMs / 4),
  }).then(
    (result) => emit({ scenario: 'crash-restart', elapsedMs: Date.now() - startedAt, result }, 0),
    (error) => emit({ scenario: 'crash-restart', error: String(error?.stack ?? error) }, 1),
  )
}
