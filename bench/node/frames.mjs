/**
 * The text the real clients put on the wire, for the Node load generator: the 0.3.1 client (`makeCfSync`) and
 * the 0.4.0 ws client (`makeWsSync`). A port of `bench/frames.py` and `bench/frames04.py`, which are checked
 * against the real clients; `python -m bench.verify_node_frames` checks that this file builds the same bytes
 * as those, so the two load generators send identical frames.
 *
 *   node bench/node/frames.mjs < cases.json   # prints the frames for the cases (used by that check)
 */
import { pathToFileURL } from 'node:url'

export const AUTH_TOKEN = 'insecure-token-change-me'
export const PAYLOAD = { authToken: AUTH_TOKEN }
const REQUEST_ID_LENGTH = 21 // the 0.3 client's request ids are 21-character nanoids

// The clients build the query with URLSearchParams over an encodeURIComponent'd payload: encoded twice.
const query = (fields) => String(new URLSearchParams(fields))
const encodedPayload = (payload) => encodeURIComponent(JSON.stringify(payload))

// -- 0.3 ---------------------------------------------------------------------------------------------------

/** `{base}/websocket?storeId=…&payload=…`, as `makeCfSync` opens a store's socket. */
export const storeUrl03 = (baseUrl, storeId, payload = PAYLOAD) =>
  `${baseUrl}/websocket?${query(payload === null ? { storeId } : { storeId, payload: encodedPayload(payload) })}`

/** A request id as long as the client's nanoids, from which `number` can be read back. */
export const requestId = (prefix, number) => prefix + String(number).padStart(REQUEST_ID_LENGTH - prefix.length, '0')

/** One `v1.TodoCreated` event, encoded as the client encodes it (field order included). */
export const todoEvent = (seqNum, clientId, sessionId, todoId = `todo-${seqNum}`) => ({
  name: 'v1.TodoCreated',
  args: { id: todoId, text: `todo ${todoId}` },
  seqNum,
  parentSeqNum: seqNum - 1,
  clientId,
  sessionId,
})

const todoEvents = (firstSeq, count, clientId, sessionId) =>
  Array.from({ length: count }, (_, offset) => todoEvent(firstSeq + offset, clientId, sessionId))

export const pushReq = (reqId, events) => JSON.stringify({ _tag: 'WSMessage.PushReq', requestId: reqId, batch: events })

/** `PushReq` of `count` todo events with seqNums `firstSeq`… (parent `firstSeq - 1`). */
export const todoPush = (reqId, firstSeq, count, clientId = 'bench', sessionId = 'bench-session') =>
  pushReq(reqId, todoEvents(firstSeq, count, clientId, sessionId))

/** `PullReq`; the client omits `cursor` on its first pull. */
export const pullReq = (reqId, cursor = null) =>
  JSON.stringify(
    cursor === null
      ? { _tag: 'WSMessage.PullReq', requestId: reqId }
      : { _tag: 'WSMessage.PullReq', requestId: reqId, cursor },
  )

export const PING_03 = JSON.stringify({ _tag: 'WSMessage.Ping', requestId: 'ping' })

// -- 0.4 ws ------------------------------------------------------------------------------------------------

const TRACE_PREFIX = 'livestore-noop-trace-id'
const SPAN_PREFIX = 'livestore-noop-span-id'
export const PING_04 = JSON.stringify({ _tag: 'Ping' })

/** `{base}/?storeId=…&payload=…&transport=ws`, as `makeWsSync` opens a store's socket. */
export const storeUrl04 = (baseUrl, storeId, payload = PAYLOAD) =>
  `${baseUrl}/?${query(payload === null ? { storeId } : { storeId, payload: encodedPayload(payload) })}&transport=ws`

/** A 25-character cuid-shaped id (`c` and 24 base-36 digits) from which `number` is readable: the no-op
 * tracer's trace and span ids have this shape. */
export const cuid = (number) => `c${number.toString(36).padStart(24, '0')}`

const option = (value) => (value === null ? { _tag: 'None' } : { _tag: 'Some', value })

const withPayload = (storeId, payload) => (payload === null ? { storeId } : { storeId, payload })

/** `SyncWsRpc.Pull`; `cursor` null pulls from the start (the client's first pull, live). The streaming Pull
 * has its `traceId` before `payload`, Push after it, as the client orders them. */
export const pull = (id, storeId, { live = true, cursor = null, backendId = null, payload = PAYLOAD } = {}) =>
  JSON.stringify({
    _tag: 'Request',
    id,
    tag: 'SyncWsRpc.Pull',
    traceId: TRACE_PREFIX + cuid(2 * Number(id)),
    payload: {
      ...withPayload(storeId, payload),
      live,
      cursor: option(cursor === null ? null : { backendId, eventSequenceNumber: cursor }),
    },
    spanId: SPAN_PREFIX + cuid(2 * Number(id) + 1),
    sampled: false,
    headers: [],
  })

/** `SyncWsRpc.Push` of `events`; `backendId` is the one the client last saw in a pull, null before its first. */
export const push = (id, storeId, events, { backendId = null, payload = PAYLOAD } = {}) =>
  JSON.stringify({
    _tag: 'Request',
    id,
    tag: 'SyncWsRpc.Push',
    payload: { ...withPayload(storeId, payload), batch: events, backendId: option(backendId) },
    traceId: TRACE_PREFIX + cuid(2 * Number(id)),
    spanId: SPAN_PREFIX + cuid(2 * Number(id) + 1),
    sampled: false,
    headers: [],
  })

/** What the client sends after each `Chunk` of a stream it consumes (broadcast chunks included). */
export const ack = (requestId) => JSON.stringify({ _tag: 'Ack', requestId })

export const todoPush04 = (id, storeId, firstSeq, count, clientId, backendId) =>
  push(id, storeId, todoEvents(firstSeq, count, clientId, `${clientId}-session`), { backendId })

// -- the check against bench/frames.py and bench/frames04.py ------------------------------------------------

const BUILDERS = {
  storeUrl03: (c) => storeUrl03(c.base, c.store, c.payload),
  requestId: (c) => requestId(c.prefix, c.number),
  todoPush: (c) => todoPush(c.reqId, c.first, c.count, c.clientId, c.sessionId),
  pullReq: (c) => pullReq(c.reqId, c.cursor),
  ping03: () => PING_03,
  storeUrl04: (c) => storeUrl04(c.base, c.store, c.payload),
  ping04: () => PING_04,
  pull04: (c) => pull(c.id, c.store, { live: c.live, cursor: c.cursor, backendId: c.backendId }),
  push04: (c) => todoPush04(c.id, c.store, c.first, c.count, c.clientId, c.backendId),
  ack04: (c) => ack(c.requestId),
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  const cases = JSON.parse(Buffer.concat(chunks).toString())
  process.stdout.write(`${JSON.stringify(cases.map((c) => BUILDERS[c.kind](c)))}\n`)
}
