/**
 * A client that only reads loses its connection while another client commits, then reconnects by itself.
 * The 0.3.1 client sends its one `PullReq` when the sync backend starts (`ws-impl.ts`: `pull` runs once per
 * backend) and `connect` reconnects without pulling again, so the server does not know where the reader stopped
 * until it pushes. This scenario records what the reader holds while it only reads after reconnecting, and
 * after it then commits a todo of its own.
 */
import { receivedFrames, sentFrames, wireLogFor } from '../lib/client-runtime.mjs'
import { syncSocketUrl } from '../lib/sync-url.mjs'
import { startTcpProxy } from '../lib/tcp-proxy.mjs'
import { allSyncedTo, createTodo, describeStore, isSyncedTo, makeTodoStore } from '../lib/todo-store.mjs'
import { waitUntil } from '../lib/waiting.mjs'

const TODOS_PER_PHASE = 5

const commitPhase = (store, phase) => {
  for (let n = 0; n < TODOS_PER_PHASE; n++) createTodo(store, `writer-${phase}-${n}`)
}

export const offlineReader = async ({ urls: [url], storeId, authToken, syncWaitMs }) => {
  const proxy = await startTcpProxy(url)
  const readerWire = wireLogFor(syncSocketUrl(proxy.url, storeId, { authToken }))
  const reader = await makeTodoStore({ url: proxy.url, storeId, authToken, clientId: 'reader' })
  const writer = await makeTodoStore({ url, storeId, authToken, clientId: 'writer' })
  const steps = {}

  commitPhase(writer, 'before')
  steps.syncedBefore = await waitUntil(() => allSyncedTo([reader, writer], TODOS_PER_PHASE), {
    timeoutMs: syncWaitMs,
  })

  proxy.cut()
  steps.dropNoticed = await waitUntil(() => readerWire.drops === 1, { timeoutMs: syncWaitMs })
  commitPhase(writer, 'offline')
  steps.offlineCommitsConfirmed = await waitUntil(() => isSyncedTo(writer, 2 * TODOS_PER_PHASE), {
    timeoutMs: syncWaitMs,
  })

  proxy.restore()
  // A Pong on the new connection means the server has served that socket, so it receives broadcasts from here.
  steps.reconnected = await waitUntil(
    () =>
      readerWire.opens === 2 &&
      readerWire.received.some(({ connection, frame }) => connection === 2 && frame._tag === 'WSMessage.Pong'),
    { timeoutMs: syncWaitMs },
  )

  commitPhase(writer, 'after')
  steps.writerSyncedAfter = await waitUntil(() => isSyncedTo(writer, 3 * TODOS_PER_PHASE), {
    timeoutMs: syncWaitMs,
  })
  // The writer's last commits went to every socket of the store with its own echo: what the reader holds now,
  // and what its new connection was sent, is what it gets while it only reads.
  const readerWhileReading = await describeStore(reader)
  const framesBeforeItsPush = readerWire.received
    .filter(({ connection }) => connection === 2)
    .map(({ frame }) => frame._tag)

  createTodo(reader, 'reader-0')
  steps.everyoneSyncedAfterReaderPushed = await waitUntil(
    () => allSyncedTo([reader, writer], 3 * TODOS_PER_PHASE + 1),
    { timeoutMs: syncWaitMs },
  )

  return {
    steps,
    readerWire: {
      connectionsOpened: readerWire.opens,
      pullRequestsPerConnection: [1, 2].map(
        (connection) =>
          readerWire.sent.filter((sent) => sent.connection === connection && sent.frame._tag === 'WSMessage.PullReq')
            .length,
      ),
      pushesSent: sentFrames(readerWire, 'WSMessage.PushReq').length,
      errorsReceived: receivedFrames(readerWire, 'WSMessage.Error').length,
    },
    readerWhileReading,
    framesBeforeItsPush,
    reader: await describeStore(reader),
    writer: await describeStore(writer),
  }
}
