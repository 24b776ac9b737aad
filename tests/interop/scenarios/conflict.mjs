/**
 * Two clients commit from the same head at the same moment. Each goes through its own proxy, which holds the
 * client's outgoing bytes until both pushes are on the wire and then lets them go together, so both pushes carry
 * the same parent for certain: the server must accept one, reject the other with the parent error, and the
 * rejected client must rebase, retry and converge with the other.
 */
import { receivedFrames, sentFrames, wireLogFor } from '../lib/client-runtime.mjs'
import { syncSocketUrl } from '../lib/sync-url.mjs'
import { startTcpProxy } from '../lib/tcp-proxy.mjs'
import { allSyncedTo, createTodo, describeStore, makeTodoStore } from '../lib/todo-store.mjs'
import { waitUntil } from '../lib/waiting.mjs'

const pushesSent = (wire) => sentFrames(wire, 'WSMessage.PushReq').length

export const conflict = async ({ urls: [url], storeId, authToken, syncWaitMs }) => {
  const clients = await Promise.all(
    ['client-a', 'client-b'].map(async (clientId) => {
      const proxy = await startTcpProxy(url)
      const store = await makeTodoStore({ url: proxy.url, storeId, authToken, clientId })
      return { clientId, proxy, store, wire: wireLogFor(syncSocketUrl(proxy.url, storeId, { authToken })) }
    }),
  )
  const stores = clients.map(({ store }) => store)

  createTodo(stores[0], 'base')
  const sharedHead = await waitUntil(() => allSyncedTo(stores, 1), { timeoutMs: syncWaitMs })

  const pushesBefore = clients.map(({ wire }) => pushesSent(wire))
  for (const { proxy } of clients) proxy.hold()
  for (const { clientId, store } of clients) createTodo(store, `from-${clientId}`)
  const bothPushesHeld = await waitUntil(
    () => clients.every(({ wire, proxy }, i) => pushesSent(wire) > pushesBefore[i] && proxy.heldByteCount() > 0),
    { timeoutMs: syncWaitMs },
  )
  for (const { proxy } of clients) proxy.release()

  const converged = await waitUntil(() => allSyncedTo(stores, 3), { timeoutMs: syncWaitMs })
  return {
    sharedHead,
    bothPushesHeld,
    converged,
    stores: await Promise.all(
      clients.map(async ({ store, wire }) => ({
        ...(await describeStore(store)),
        pushRejections: receivedFrames(wire, 'WSMessage.Error').map((frame) => frame.message),
      })),
    ),
  }
}
