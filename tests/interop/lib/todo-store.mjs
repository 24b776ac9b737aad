/**
 * The todo app every scenario runs: a LiveStore schema with a materialized `todos` table, and real stores
 * built with `@livestore/adapter-node` (in-memory storage) syncing through `makeCfSync({ url })`.
 */
import { makeAdapter } from '@livestore/adapter-node'
import { createStorePromise, Events, makeSchema, Schema, State } from '@livestore/livestore'
import { makeCfSync } from '@livestore/sync-cf'
import { Effect } from 'effect'

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

/** A store with its own client id, so several stores in one process are distinct LiveStore clients. */
export const makeTodoStore = ({ url, storeId, authToken, clientId }) =>
  createStorePromise({
    schema,
    storeId,
    syncPayload: { authToken },
    disableDevtools: true,
    adapter: makeAdapter({
      storage: { type: 'in-memory' },
      clientId,
      sessionId: `${clientId}-session`,
      sync: { backend: makeCfSync({ url }) },
    }),
  })

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
  const [leader, session] = await Promise.all([
    Effect.runPromise(store.clientSession.leaderThread.getSyncState),
    Effect.runPromise(store.syncProcessor.syncState.get),
  ])
  return {
    upstreamHead: leader.upstreamHead.global,
    pending: leader.pending.length,
    sessionHead: session.upstreamHead.global,
    sessionPending: session.pending.length,
  }
}

/** True once the server has confirmed exactly `head` events to this store and the app's state shows them all. */
export const isSyncedTo = async (store, head) => {
  const { upstreamHead, pending, sessionHead, sessionPending } = await syncProgress(store)
  return upstreamHead === head && pending === 0 && sessionHead === head && sessionPending === 0
}

/** True once every store `isSyncedTo(head)`. */
export const allSyncedTo = async (stores, head) =>
  (await Promise.all(stores.map((store) => isSyncedTo(store, head)))).every(Boolean)

export const createTodo = (store, id) => store.commit(events.todoCreated({ id, text: `todo ${id}` }))

/** What a scenario reports per store: the todos the user sees and how far the server has confirmed. */
export const describeStore = async (store) => ({
  clientId: store.clientId,
  ...(await syncProgress(store)),
  todos: readTodos(store),
})
