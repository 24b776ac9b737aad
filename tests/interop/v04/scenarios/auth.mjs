/**
 * The server accepts tokens only. Two clients with a valid token (one ws, one http) sync with each other; a
 * client with a refused token (expired, say) over the chosen transport never gets anything from the store.
 */
import { sleep, waitUntil } from '../../lib/waiting.mjs'
import { allSyncedTo, createTodo, describeStore, makeTodoStore } from '../lib/todo-store.mjs'

const MEMBER_TODOS = 5
/** Long enough for several of the refused client's attempts. */
const REFUSED_CLIENT_GRACE_MS = 2000

export const auth = async ({ urls: [url], transport, storeId, authToken, wrongToken, syncWaitMs }) => {
  const intruder = await makeTodoStore({ url, transport, storeId, authToken: wrongToken, clientId: 'intruder' })
  const members = await Promise.all(
    [
      ['member-ws', 'ws'],
      ['member-http', 'http'],
    ].map(([clientId, memberTransport]) =>
      makeTodoStore({ url, transport: memberTransport, storeId, authToken, clientId }),
    ),
  )
  createTodo(intruder, 'intruder-0')
  for (let n = 0; n < MEMBER_TODOS; n++) createTodo(members[0], `member-${n}`)
  const membersSynced = await waitUntil(() => allSyncedTo(members, MEMBER_TODOS, MEMBER_TODOS), {
    timeoutMs: syncWaitMs,
  })
  await sleep(REFUSED_CLIENT_GRACE_MS)
  return {
    membersSynced,
    intruder: await describeStore(intruder),
    members: await Promise.all(members.map(describeStore)),
  }
}
