/**
 * The todo app every 0.4.0 scenario runs: the same schema as the 0.3.1 harness (`../../lib/todo-store.mjs`), so
 * both generations can share one store, and real stores built with `@livestore/adapter-node` syncing through
 * `makeWsSync({ url })` or `makeHttpSync({ url })` from `@livestore/sync-cf/client`.
 */
import { makeAdapter } from '@livestore/adapter-node'
import {
  createStorePromise,
  Events,
  EventSequenceNumber,
  makeSchema,
  makeShutdownDeferred,
  Schema,
  State,
  StoreInternalsSymbol,
} from '@livestore/livestore'
import { makeHttpSync, makeWsSync } from '@livestore/sync-cf/client'
import { Deferred, Effect, Exit, Stream } from 'effect'

import { transportUrl } from './sync-url.mjs'

const todos = State.SQLite.table({
  name: 'todos',
  columns: {
    id: State.SQLite.text({ primaryKey: true }),
    text: State.SQLite.text({ default: '' }),
    completed: State.SQLite.boolean({ default: false }),
    deleted: State.SQLite.boolean({ default: false }),
    // A server that stores or delivers one creation twice shows up here instead of vanishing in an upsert.
    times_created: State.SQLite.integer({ default: 0 }),
  },
})

export const events = {
  todoCreated: Events.synced({
    name: 'v1.TodoCreated',
    schema: Schema.Struct({ id: Schema.String, text: Schema.String }),
  }),
  todoCompleted: Events.synced({ name: 'v1.TodoCompleted', schema: Schema.Struct({ id: Schema.String }) }),
  todoDeleted: Events.synced({ name: 'v1.TodoDeleted', schema: Schema.Struct({ id: Schema.String }) }),
}

const materializers = State.SQLite.materializers(events, {
  'v1.TodoCreated': ({ id, text }) => ({
    sql: `INSERT INTO todos (id, text, completed, deleted, times_created) VALUES ($id, $text, 0, 0, 1)
          ON CONFLICT (id) DO UPDATE SET times_created = times_created + 1`,
    bindValues: { id, text },
    writeTables: new Set(['todos']),
  }),
  'v1.TodoCompleted': ({ id }) => todos.update({ completed: true }).where({ id }),
  'v1.TodoDeleted': ({ id }) => todos.update({ deleted: true }).where({ id }),
})

const schema = makeSchema({ events, state: State.SQLite.makeState({ tables: { todos }, materializers }) })

/** HTTP clients poll for new events this often (the client's default is 5 s), so scenarios converge quickly. */
export const HTTP_POLL_INTERVAL_MS = 500

const syncBackend = (transport, url) => {
  if (transport === 'ws') return makeWsSync({ url: transportUrl(url, 'ws') })
  if (transport === 'http') {
    return makeHttpSync({ url: transportUrl(url, 'http'), livePull: { pollInterval: HTTP_POLL_INTERVAL_MS } })
  }
  throw new Error(`unknown transport ${transport}`)
}

/**
 * A store with its own client id, so several stores in one process are distinct LiveStore clients. `url` is the
 * sync backend's base URL (either scheme, see `transportUrl`). Storage is in memory unless a `directory` is given
 * (to restart a client on its own data). `store.shutdownReason` resolves once LiveStore shuts the store down, with
 * the reason it gave (e.g. `backend-id-mismatch`).
 */
export const makeTodoStore = async ({ url, transport, storeId, authToken, clientId, directory }) => {
  const shutdownDeferred = Effect.runSync(makeShutdownDeferred)
  const store = await createStorePromise({
    schema,
    storeId,
    syncPayload: { authToken },
    disableDevtools: true,
    shutdownDeferred,
    adapter: makeAdapter({
      storage: directory === undefined ? { type: 'in-memory' } : { type: 'fs', baseDirectory: directory },
      clientId,
      sessionId: `${clientId}-session`,
      sync: { backend: syncBackend(transport, url) },
    }),
  })
  store.shutdownReason = Effect.runPromiseExit(Deferred.await(shutdownDeferred)).then(describeShutdown)
  return store
}

const describeShutdown = (exit) =>
  Exit.isSuccess(exit) ? exit.value.reason : `failed: ${String(exit.cause).split('\n')[0]}`

/** The materialized todos as the app would render them, ordered by id. */
export const readTodos = (store) => store.query(todos.orderBy('id', 'asc'))

/**
 * How far this store is in sync. The leader talks to the server: `upstreamHead` is the last global sequence
 * number the server confirmed to it, `pending` its own events the server has not confirmed yet. The session
 * (whose database the app reads) trails the leader: `sessionHead` is how far it has applied the leader's events,
 * `sessionPending` its commits the leader has not taken yet.
 * Commits reach the leader asynchronously, so wait for an expected head, not just for `pending` to be empty.
 */
export const syncProgress = async (store) => {
  const { clientSession, syncProcessor } = store[StoreInternalsSymbol]
  const [leader, session] = await Promise.all([
    Effect.runPromise(clientSession.leaderThread.syncState.get),
    Effect.runPromise(syncProcessor.syncState.get),
  ])
  return {
    upstreamHead: leader.upstreamHead.global,
    pending: leader.pending.length,
    sessionHead: session.upstreamHead.global,
    sessionPending: session.pending.length,
  }
}

/**
 * True once the server has confirmed exactly `head` events to this store and the app shows `todoCount` todos.
 * The count matters: in 0.4.0 the session's sync state takes a pulled batch before the session has materialized
 * it (`ClientSessionSyncProcessor` sets its state first), so the app's table can trail `sessionHead` for a few
 * hundred milliseconds.
 */
export const isSyncedTo = async (store, head, todoCount) => {
  const { upstreamHead, pending, sessionHead, sessionPending } = await syncProgress(store)
  const synced = upstreamHead === head && pending === 0 && sessionHead === head && sessionPending === 0
  return synced && readTodos(store).length === todoCount
}

/** True once every store `isSyncedTo(head, todoCount)`. */
export const allSyncedTo = async (stores, head, todoCount) =>
  (await Promise.all(stores.map((store) => isSyncedTo(store, head, todoCount)))).every(Boolean)

export const createTodo = (store, id) => store.commit(events.todoCreated({ id, text: `todo ${id}` }))

/** The store's eventlog up to what the server confirmed, in order, as `e<seqNum> <name> <todo id>`. */
export const readEventlog = async (store) => {
  const { upstreamHead } = await syncProgress(store)
  const until = EventSequenceNumber.Client.Composite.make({ global: upstreamHead, client: 0 })
  const confirmed = await Effect.runPromise(Stream.runCollect(store.eventsStream({ until })))
  return Array.from(confirmed, (event) => `e${event.seqNum.global} ${event.name} ${event.args.id}`)
}

/** What a scenario reports per store: the todos the user sees and how far the server has confirmed. */
export const describeStore = async (store) => ({
  clientId: store.clientId,
  ...(await syncProgress(store)),
  todos: readTodos(store),
})
