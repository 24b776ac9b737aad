/**
 * LiveStore's leader worker: it owns the OPFS databases and the one sync connection of this browser profile
 * (all tabs of a store share it through the shared worker).
 *
 * The sync URL is this page's own host: livesync answers any path ending in `websocket`, and `makeCfSync`
 * appends `/websocket`, so a build served by Django (or the Vite dev server's proxy) needs no configuration.
 */
import { makeWorker } from '@livestore/adapter-web/worker'
import { makeCfSync } from '@livestore/sync-cf'

import { schema } from './schema.js'

const url = `${self.location.protocol === 'https:' ? 'wss:' : 'ws:'}//${self.location.host}`

makeWorker({ schema, sync: { backend: makeCfSync({ url }) } })
