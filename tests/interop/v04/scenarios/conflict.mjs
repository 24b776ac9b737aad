/**
 * Two ws clients commit from the same head at the same moment. Each goes through its own proxy, which holds the
 * client's outgoing bytes until both pushes are on the wire and then lets them go together, so both pushes carry
 * the same parent for certain: the server must accept one and answer the other `ServerAheadError`; that client
 * must rebase onto what its pull brings, push again and end with the same eventlog as the other.
 */
import { startTcpProxy } from '../../lib/tcp-proxy.mjs'
import { waitUntil } from '../../lib/waiting.mjs'
import { sentMessages, wireLogFor } from '../lib/client-runtime.mjs'
import { syncUrl } from '../lib/sync-url.mjs'
import { allSyncedTo, createTodo, describeStore, makeTodoStore, readEventlog } from '../lib/todo-store.mjs'
import { pushFailures } from '../lib/wire.mjs'

const pushesSent = (wire) => sentMessages(wire, 'Request').filter(({ tag }) => tag === 'SyncWsRpc.Push').length

export const conflict = async ({ urls: [url], storeId, authToken, syncWaitMs }) => {
  const clients = await Promise.all(
    ['client-a', 'client-b'].map(async (clientId) => {
      const proxy = await startTcpProxy(url)
      const store = await makeTodoStore({ url: proxy.url, transport: 'ws', storeId, authToken, clientId })
      return { clientId, proxy, store, wire: wireLogFor(syncUrl(proxy.url, storeId, { authToken }, 'ws')) }
    }),
  )
  const stores = clients.map(({ store }) => store)

  createTodo(stores[0], 'base')
  const sharedHead = await waitUntil(() => allSyncedTo(stores, 1, 1), { timeoutMs: syncWaitMs })

  const pushesBefore = clients.map(({ wire }) => pushesSent(wire))
  for (const { proxy } of clients) proxy.hold()
  for (const { clientId, store } of clients) createTodo(store, `from-${clientId}`)
  const bothPushesHeld = await waitUntil(
    () => clients.every(({ wire, proxy }, i) => pushesSent(wire) > pushesBefore[i] && proxy.heldByteCount() > 0),
    { timeoutMs: syncWaitMs },
  )
  for (const { proxy } of clients) proxy.release()

  const converged = await waitUntil(() => allSyncedTo(stores, 3, 3), { timeoutMs: syncWaitMs })
  return {
    sharedHead,
    bothPushesHeld,
    converged,
    stores: await Promise.all(
      clients.map(async ({ store, wire }) => ({
        ...(await describeStore(store)),
        eventlog: await readEventlog(store),
        pushFailures: pushFailures(wire),
      })),
    ),
  }
}
