/**
 * The Node load generator: runs one job in its own process, a drop-in for `python -m bench.loadgen`
 * (`python -m bench --client node` runs every scenario with it).
 *
 *   node bench/node/loadgen.mjs        # reads one JSON job line on stdin
 *
 * The same protocol with the parent (`bench/runner.py`): the job as one JSON line on stdin; `READY {json}`
 * for a job that waits for the parent, which answers with one line; the last line on stdout is
 * `RESULT {json}` or `ERROR message`. A job's `protocol` (`0.3` or `0.4-ws`) picks its client.
 */
import { createInterface } from 'node:readline'

import { CLIENTS } from './clients.mjs'
import { JOBS } from './jobs.mjs'
import { sustained } from './sustained.mjs'

const ALL_JOBS = { ...JOBS, sustained }

const lines = []
const waiting = []
createInterface({ input: process.stdin }).on('line', (line) =>
  waiting.length ? waiting.shift()(line) : lines.push(line),
)
const nextLine = () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((resolve) => waiting.push(resolve)))

const report = (line) => process.stdout.write(`${line}\n`)
// stdin stays open (the parent may still answer READY lines), so the process ends here, once stdout is out.
const finish = (line, code) => process.stdout.write(`${line}\n`, () => process.exit(code))

try {
  const job = JSON.parse(await nextLine())
  const result = await ALL_JOBS[job.kind](CLIENTS[job.protocol ?? '0.3'], job, { report, nextLine })
  finish(`RESULT ${JSON.stringify(result)}`, 0)
} catch (error) {
  process.stderr.write(`${error?.stack ?? error}\n`)
  finish(`ERROR ${error?.name ?? 'Error'}: ${error?.message ?? error}`, 1)
}
