/**
 * Runs one interop scenario with real LiveStore 0.4.0 clients against a running sync server and prints exactly
 * one JSON line on stdout: `{"scenario", "elapsedMs", "result"}` on completion, `{"scenario", "error"}` on a
 * crash or when the hard timeout strikes (exit code 1 or 2). Everything else goes to stderr.
 *
 *   node scenario.mjs <scenario> --url ws://127.0.0.1:PORT [--url …] --store-id ID --token TOKEN
 *                     [--transport ws|http] [--admin-secret SECRET] [--total-events N] [--timeout-ms MS]
 *                     [--clients N] [--first-client N] [--todos-per-client N] [--pace-ms MS] [--through-leader]
 *                     [--ready-file PATH] [--start-file PATH] [--report-file PATH] [--wire-dir DIR] [--stored-log]
 *
 * `--transport` picks `makeWsSync` or `makeHttpSync` for scenarios that run one transport; the URL's scheme
 * is adjusted to it.
 */
import './lib/client-runtime.mjs'

import { parseArgs } from 'node:util'

import { auth } from './scenarios/auth.mjs'
import { conflict } from './scenarios/conflict.mjs'
import { converge } from './scenarios/converge.mjs'
import { crowd } from './scenarios/crowd.mjs'
import { lateJoiner } from './scenarios/late-joiner.mjs'
import { mixed } from './scenarios/mixed.mjs'
import { reset } from './scenarios/reset.mjs'

const SCENARIOS = { auth, conflict, converge, crowd, 'late-joiner': lateJoiner, mixed, reset }

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string', multiple: true },
    'store-id': { type: 'string' },
    token: { type: 'string' },
    'wrong-token': { type: 'string', default: 'wrong' },
    transport: { type: 'string', default: 'ws' },
    'admin-secret': { type: 'string' },
    // Events all clients of the store commit together, when clients in another process commit too.
    'total-events': { type: 'string' },
    'timeout-ms': { type: 'string', default: '90000' },
    // The crowd scenario: its clients, their todos and pace, the start and report files, what it writes out.
    clients: { type: 'string', default: '1' },
    'first-client': { type: 'string', default: '0' },
    'todos-per-client': { type: 'string', default: '150' },
    'pace-ms': { type: 'string', default: '0' },
    'through-leader': { type: 'boolean', default: false },
    'ready-file': { type: 'string' },
    'start-file': { type: 'string' },
    'report-file': { type: 'string' },
    'wire-dir': { type: 'string' },
    'stored-log': { type: 'boolean', default: false },
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
if (
  scenario === undefined ||
  values.url === undefined ||
  values['store-id'] === undefined ||
  !['ws', 'http'].includes(values.transport)
) {
  const usage = `usage: scenario.mjs <${Object.keys(SCENARIOS).join('|')}> --url … --store-id … [--transport ws|http]`
  emit({ scenario: name, error: usage }, 1)
} else {
  setTimeout(() => emit({ scenario: name, error: `hard timeout after ${timeoutMs} ms` }, 2), timeoutMs)
  const startedAt = Date.now()
  // Scenario soft waits stay well inside the hard timeout so a slow sync still yields a full state report.
  scenario({
    urls: values.url,
    storeId: values['store-id'],
    authToken: values.token,
    wrongToken: values['wrong-token'],
    transport: values.transport,
    adminSecret: values['admin-secret'],
    totalEvents: Number(values['total-events']),
    syncWaitMs: Math.floor(timeoutMs / 8),
    clients: Number(values.clients),
    firstClient: Number(values['first-client']),
    todosPerClient: Number(values['todos-per-client']),
    paceMs: Number(values['pace-ms']),
    throughLeader: values['through-leader'],
    readyFile: values['ready-file'],
    startFile: values['start-file'],
    reportFile: values['report-file'],
    wireDir: values['wire-dir'],
    storedLog: values['stored-log'],
  }).then(
    (result) => emit({ scenario: name, elapsedMs: Date.now() - startedAt, result }, 0),
    (error) => emit({ scenario: name, error: String(error?.stack ?? error) }, 1),
  )
}
