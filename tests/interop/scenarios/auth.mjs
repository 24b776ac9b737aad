/**
 * The server runs with an auth token. Two clients with the right token sync with each other; a client with a
 * wrong token is refused before the upgrade, keeps retrying, and never receives anything.
 */
import { wireLogFor } from '../lib/client-runtime.mjs'
import { syncSocketUrl } from '../lib/sync-url.mjs'
import { allSyncedTo, createTodo, describeStore, makeTodoStore } from '../lib/todo-store.mjs'
import { sleep, waitUntil } from '../lib/waiting.mjs'

const MEMBER_TODOS = 5
/** Long enough for several of the refused client's reconnect attempts (its backoff starts at 100 ms). */
const REFUSED_CLIENT_GRACE_MS = 2000

export const auth = async ({ urls: [url], storeId, authToken, wrongToken, syncWaitMs }) => {
  const intruderWire = wireLogFor(syncSocketUrl(url, storeId, { authToken: wrongToken }))
  const intruder = await makeTodoStore({ url, storeId, authToken: wrongToken, clientId: 'intruder' })
  const members = await Promise.all(
    ['member-a', 'member-b'].map((clientId) => makeTodoStore({ url, storeId, authToken, clientId })),
  )

  createTodo(intruder, 'intruder-0')
  for (let n = 0; n < MEMBER_TODOS; n++) createTodo(members[0], `member-${n}`)
  const membersSynced = await waitUntil(() => allSyncedTo(members, MEMBER_TODOS), { timeoutMs: syncWaitMs })
  await sleep(REFUSED_CLIENT_GRACE_MS)

  return {
    membersSynced,
    intruderWire: { connectionsOpened: intruderWire.opens, framesReceived: intruderWire.received.length },
    intruder: await describeStore(intruder),
    members: await Promise.all(members.map(describeStore)),
  }
}
