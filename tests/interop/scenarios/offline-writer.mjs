/**
 * Client A loses its connection (its proxy is cut) while it and clients B and C keep committing; when the
 * network comes back A reconnects by itself. The 0.3.1 client never pulls again after reconnecting, so A's first
 * push is rejected with its stale parent; livesync answers that rejection with the events A missed, A rebases
 * and every client ends with every event exactly once. Concurrent commits also race each other now and then,
 * so parent rejections in general are expected; only the first push after reconnecting is reported.
 */
import { wireLogFor } from '../lib/client-runtime.mjs'
import { syncSocketUrl } from '../lib/sync-url.mjs'
import { startTcpProxy } from '../lib/tcp-proxy.mjs'
import { allSyncedTo, createTodo, describeStore, makeTodoStore } from '../lib/todo-store.mjs'
import { waitUntil } from '../lib/waiting.mjs'

const TODOS_PER_PHASE = 5

const commitPhase = (store, clientId, phase) => {
  for (let n = 0; n < TODOS_PER_PHASE; n++) createTodo(store, `${clientId}-${phase}-${n}`)
}

/** The first push the client sent on its `connection`-th connection and the server's answer to it. */
const firstPushOnConnection = (wire, connection) => {
  const push = wire.sent.find((sent) => sent.connection === connection && sent.frame._tag === 'WSMessage.PushReq')
  if (push === undefined) return null
  const answer = wire.received
    .map(({ frame }) => frame)
    .find((frame) => frame.requestId === push.frame.requestId && frame._tag !== 'WSMessage.PullRes')
  return {
    parentSeqNum: push.frame.batch[0].parentSeqNum,
    answer: answer === undefined ? null : (answer.message ?? answer._tag),
  }
}

export const offlineWriter = async ({ urls: [url], storeId, authToken, syncWaitMs }) => {
  const proxy = await startTcpProxy(url)
  const offlineWire = wireLogFor(syncSocketUrl(proxy.url, storeId, { authToken }))
  const clients = await Promise.all(
    [
      { clientId: 'client-a', url: proxy.url },
      { clientId: 'client-b', url },
      { clientId: 'client-c', url },
    ].map(async (client) => ({ ...client, store: await makeTodoStore({ ...client, storeId, authToken }) })),
  )
  const stores = clients.map(({ store }) => store)
  const [offline, ...online] = clients
  const phaseEvents = TODOS_PER_PHASE * clients.length
  const steps = {}

  for (const { store, clientId } of clients) commitPhase(store, clientId, 'before')
  steps.syncedBefore = await waitUntil(() => allSyncedTo(stores, phaseEvents), { timeoutMs: syncWaitMs })

  proxy.cut()
  steps.dropNoticed = await waitUntil(() => offlineWire.drops === 1, { timeoutMs: syncWaitMs })
  for (const { store, clientId } of clients) commitPhase(store, clientId, 'offline')
  const onlineStores = online.map(({ store }) => store)
  steps.othersSyncedWhileOffline = await waitUntil(
    () => allSyncedTo(onlineStores, phaseEvents + TODOS_PER_PHASE * online.length),
    { timeoutMs: syncWaitMs },
  )

  proxy.restore()
  steps.syncedAfterReconnect = await waitUntil(() => allSyncedTo(stores, 2 * phaseEvents), {
    timeoutMs: syncWaitMs,
  })

  for (const { store, clientId } of clients) commitPhase(store, clientId, 'after')
  steps.syncedAfter = await waitUntil(() => allSyncedTo(stores, 3 * phaseEvents), { timeoutMs: syncWaitMs })

  return {
    steps,
    offlineClient: {
      clientId: offline.clientId,
      connectionsOpened: offlineWire.opens,
      firstPushAfterReconnect: firstPushOnConnection(offlineWire, 2),
      eventsReceivedAfterReconnect: offlineWire.received
        .filter(({ connection, frame }) => connection === 2 && frame._tag === 'WSMessage.PullRes')
        .flatMap(({ frame }) => frame.batch.map(({ eventEncoded }) => eventEncoded.seqNum)),
    },
    stores: await Promise.all(stores.map(describeStore)),
  }
}
