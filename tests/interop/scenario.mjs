/**
 * Runs one interop scenario with real LiveStore 0.3.1 clients against a running sync server and prints exactly
 * one JSON line on stdout: `{"scenario", "elapsedMs", "result"}` on completion, `{"scenario", "error"}` on a
 * crash or when the hard timeout strikes (exit code 1 or 2). Everything else goes to stderr.
 *
 *   node scenario.mjs <scenario> --url ws://127.0.0.1:PORT [--url …] --store-id ID --token TOKEN
 *                     [--wrong-token TOKEN] [--total-events N] [--timeout-ms MS]
 *                     [--clients N] [--first-client N] [--todos-per-client N]
 *                     [--start-file PATH] [--report-file PATH]
 */
import './lib/client-runtime.mjs'

import { parseArgs } from 'node:util'

import { auth } from './scenarios/auth.mjs'
import { conflict } from './scenarios/conflict.mjs'
import { converge } from './scenarios/converge.mjs'
import { crowd } from './scenarios/crowd.mjs'
import { lateJoiner } from './scenarios/late-joiner.mjs'
import { mixedGenerations } from './scenarios/mixed-generations.mjs'
import { offlineReader } from './scenarios/offline-reader.mjs'
import { offlineWriter } from './scenarios/offline-writer.mjs'

const SCENARIOS = {
  auth,
  conflict,
  converge,
  crowd,
  'late-joiner': lateJoiner,
  'mixed-generations': mixedGenerations,
  'offline-reader': offlineReader,
  'offline-writer': offlineWriter,
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string', multiple: true },
    'store-id': { type: 'string' },
    token: { type: 'string' },
    'wrong-token': { type: 'string', default: 'wrong' },
    // Events all clients of the store commit together, when clients in another process commit too.
    'total-events': { type: 'string' },
    // The crowd scenario: how many clients, and how many todos each creates.
    clients: { type: 'string', default: '1' },
    'first-client': { type: 'string', default: '0' },
    'start-file': { type: 'string' },
    'report-file': { type: 'string' },
    'todos-per-client': { type: 'string', default: '150' },
    'timeout-ms': { type: 'string', default: '90000' },
  },
})

const [name] = positionals
const timeoutMs = Number(values['timeout-ms'])
let emitted = false

/** Writes the single result line, then exits once stdout has taken it. */
const emit = (line, exitCode) => {
  if (emitted) return
  emitted = true
  process.stdout.write(`${JSON.stringify(line)}\n`, () => process.exit(exitCode))
}

const scenario = SCENARIOS[name]
if (scenario === undefined || values.url === undefined || values['store-id'] === undefined) {
  emit({ scenario: name, error: `usage: scenario.mjs <${Object.keys(SCENARIOS).join('|')}> --url … --store-id …` }, 1)
} else {
  setTimeout(() => emit({ scenario: name, error: `hard timeout after ${timeoutMs} ms` }, 2), timeoutMs)
  const startedAt = Date.now()
  // Scenario soft waits stay well inside the hard timeout so a slow sync still yields a full state report.
  scenario({
    urls: values.url,
    storeId: values['store-id'],
    authToken: values.token,
    wrongToken: values['wrong-token'],
    totalEvents: Number(values['total-events']),
    clients: Number(values.clients),
    firstClient: Number(values['first-client']),
    startFile: values['start-file'],
    reportFile: values['report-file'],
    todosPerClient: Number(values['todos-per-client']),
    syncWaitMs: Math.floor(timeoutMs / 8),
  }).then(
    (result) => emit({ scenario: name, elapsedMs: Date.now() - startedAt, result }, 0),
    (error) => emit({ scenario: name, error: String(error?.stack ?? error) }, 1),
  )
}
