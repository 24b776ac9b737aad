/**
 * The server resets a store under a running 0.4.0 client (livesync's admin reset, which gives the store a new
 * backendId). The client must notice the mismatch by itself (its next pull, after a reconnect on ws or at its
 * next poll on http, carries the old backendId) and, with the default `onBackendIdMismatch: 'reset'`, wipe its
 * local databases and shut down. If it has not noticed after a while, it commits a todo, whose push carries the
 * old backendId too. Then a fresh client commits after the reset, and the reset client restarts on its own disk:
 * both must see only post-reset events.
 *
 * One pre-reset client per process: LiveStore broadcasts a shutdown to every store of the same storeId in the
 * process, so a second one would be shut down by the first one's mismatch rather than by its own.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { sleep, waitUntil } from '../../lib/waiting.mjs'
import { resetStore } from '../lib/admin-reset.mjs'
import { wireLogFor } from '../lib/client-runtime.mjs'
import { syncUrl } from '../lib/sync-url.mjs'
import { allSyncedTo, createTodo, describeStore, isSyncedTo, makeTodoStore } from '../lib/todo-store.mjs'
import { failuresByTag } from '../lib/wire.mjs'

const BEFORE_RESET = 5
const AFTER_RESET = 3
// Longer than a ws reconnect (1 s backoff, jittered) and several http polls.
const NOTICE_WITHIN_MS = 5000

/** Resolves to the store's shutdown reason, or to undefined if it is still running after `ms`. */
const shutdownWithin = (store, ms) => Promise.race([store.shutdownReason, sleep(ms).then(() => undefined)])

export const reset = async ({ urls: [url], transport, storeId, authToken, adminSecret, syncWaitMs }) => {
  const directory = await mkdtemp(join(tmpdir(), 'livesync-reset-'))
  try {
    const options = { url, transport, storeId, authToken }
    const wire = wireLogFor(syncUrl(url, storeId, { authToken }, transport))
    const steps = {}

    const resetClient = await makeTodoStore({ ...options, clientId: 'client-reset', directory })
    for (let n = 0; n < BEFORE_RESET; n++) createTodo(resetClient, `before-${n}`)
    steps.syncedBeforeReset = await waitUntil(() => isSyncedTo(resetClient, BEFORE_RESET, BEFORE_RESET), {
      timeoutMs: syncWaitMs,
    })
    const beforeReset = await describeStore(resetClient)

    await resetStore({ url, storeId, authToken, adminSecret })
    let shutdownReason = await shutdownWithin(resetClient, NOTICE_WITHIN_MS)
    steps.noticedWithoutCommitting = shutdownReason !== undefined
    if (shutdownReason === undefined) {
      createTodo(resetClient, 'committed-after-reset')
      shutdownReason = await shutdownWithin(resetClient, syncWaitMs)
    }
    const failuresSeen = failuresByTag(wire)

    const freshClient = await makeTodoStore({ ...options, clientId: 'client-fresh' })
    for (let n = 0; n < AFTER_RESET; n++) createTodo(freshClient, `after-${n}`)
    steps.freshSynced = await waitUntil(() => isSyncedTo(freshClient, AFTER_RESET, AFTER_RESET), {
      timeoutMs: syncWaitMs,
    })

    const restarted = await makeTodoStore({ ...options, clientId: 'client-reset', directory })
    const restartedAt = Date.now()
    steps.restartedSynced = await waitUntil(() => allSyncedTo([restarted, freshClient], AFTER_RESET, AFTER_RESET), {
      timeoutMs: syncWaitMs,
    })

    return {
      steps,
      restartSyncMs: Date.now() - restartedAt,
      beforeReset,
      shutdownReason: shutdownReason ?? null,
      failuresSeen,
      fresh: await describeStore(freshClient),
      restarted: await describeStore(restarted),
    }
  } finally {
    await rm(directory, { recursive: true, force: true })
  }
}
