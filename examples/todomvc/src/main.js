/**
 * The page: boots a LiveStore store (OPFS-persisted, synced by the leader worker) and renders its todos with
 * plain DOM updates. `?storeId=…` picks the store, so two windows on the same URL edit the same list.
 */
import { makePersistedAdapter } from '@livestore/adapter-web'
import LiveStoreSharedWorker from '@livestore/adapter-web/shared-worker?sharedworker'
import { createStorePromise, queryDb } from '@livestore/livestore'
import { Effect } from 'effect'

import LiveStoreWorker from './livestore.worker.js?worker'
import { events, schema, todos } from './schema.js'
import './style.css'

const DEFAULT_STORE_ID = 'todomvc-demo'
// livesync's example payload validator (LIVESYNC_AUTH_TOKEN) expects this token; without it the payload is ignored.
const SYNC_PAYLOAD = { authToken: 'insecure-token-change-me' }
const SYNC_STATUS_INTERVAL_MS = 500

const storeId = new URLSearchParams(location.search).get('storeId') || DEFAULT_STORE_ID

const element = (selector) => document.querySelector(selector)

const visibleTodos$ = queryDb(
  todos.where({ deletedAt: null }).orderBy([
    { col: 'createdAt', direction: 'asc' },
    { col: 'id', direction: 'asc' },
  ]),
  { label: 'visibleTodos' },
)

const renderTodos = (store, rows) => {
  const list = element('.todo-list')
  list.replaceChildren(
    ...rows.map((todo) => {
      const item = document.createElement('li')
      item.dataset.id = todo.id
      item.classList.toggle('completed', todo.completed)

      const toggle = document.createElement('input')
      toggle.type = 'checkbox'
      toggle.className = 'toggle'
      toggle.checked = todo.completed
      toggle.setAttribute('aria-label', `Complete ${todo.text}`)
      toggle.addEventListener('change', () =>
        store.commit(toggle.checked ? events.todoCompleted({ id: todo.id }) : events.todoUncompleted({ id: todo.id })),
      )

      const label = document.createElement('label')
      label.textContent = todo.text

      const destroy = document.createElement('button')
      destroy.className = 'destroy'
      destroy.setAttribute('aria-label', `Delete ${todo.text}`)
      destroy.addEventListener('click', () => store.commit(events.todoDeleted({ id: todo.id, deletedAt: new Date() })))

      item.append(toggle, label, destroy)
      return item
    }),
  )
  const left = rows.filter((todo) => !todo.completed).length
  element('.todo-count').textContent = `${left} ${left === 1 ? 'item' : 'items'} left`
  element('.clear-completed').hidden = rows.every((todo) => !todo.completed)
  element('.footer').hidden = rows.length === 0
}

/**
 * Shows how far the server has confirmed this window's changes. A commit first goes to the leader worker (the
 * session's pending events), which pushes it to the server (the leader's pending events); while offline they
 * wait there and are pushed on reconnect. The status element also carries the numbers as data attributes.
 */
const makeSyncStatus = (store) => {
  const status = element('.sync-status')
  const update = async () => {
    const session = await Effect.runPromise(store.syncProcessor.syncState.get)
    const leader = await Effect.runPromise(store.clientSession.leaderThread.getSyncState)
    const waiting = session.pending.length + leader.pending.length
    status.dataset.waiting = String(waiting)
    status.dataset.serverHead = String(leader.upstreamHead.global)
    status.textContent =
      waiting === 0
        ? `In sync with the server (event ${leader.upstreamHead.global})`
        : `${waiting} ${waiting === 1 ? 'change' : 'changes'} waiting for the server`
  }
  return () => update().catch((error) => console.warn('sync status unavailable', error))
}

const start = async () => {
  element('.store-id').textContent = storeId
  const store = await createStorePromise({
    schema,
    storeId,
    syncPayload: SYNC_PAYLOAD,
    // The devtools need LiveStore's Vite plugin and browser extension; this demo does without both.
    disableDevtools: true,
    adapter: makePersistedAdapter({
      storage: { type: 'opfs' },
      worker: LiveStoreWorker,
      sharedWorker: LiveStoreSharedWorker,
    }),
  })

  const showSyncStatus = makeSyncStatus(store)
  // Refreshed on every change of the list (a local commit shows as waiting at once) and on a timer, which is
  // what notices the server's confirmations.
  const pollSyncStatus = () => showSyncStatus().finally(() => setTimeout(pollSyncStatus, SYNC_STATUS_INTERVAL_MS))

  store.subscribe(visibleTodos$, {
    onUpdate: (rows) => {
      renderTodos(store, rows)
      showSyncStatus()
    },
  })

  element('.new-todo-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const input = element('.new-todo')
    const text = input.value.trim()
    if (text === '') return
    store.commit(events.todoCreated({ id: crypto.randomUUID(), text, createdAt: new Date() }))
    input.value = ''
  })
  element('.clear-completed').addEventListener('click', () =>
    store.commit(events.todoClearedCompleted({ deletedAt: new Date() })),
  )

  pollSyncStatus()
  document.body.dataset.ready = 'true'
}

start().catch((error) => {
  console.error(error)
  element('.sync-status').textContent = `LiveStore could not start: ${error?.message ?? error}`
  document.body.dataset.ready = 'failed'
})
