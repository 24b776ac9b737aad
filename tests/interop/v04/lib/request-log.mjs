/**
 * A 0.4.0 client's wire log (`client-runtime.mjs`, timed by `wire-timeline.mjs`) read request by request, the same
 * way for ws and http: each `…Rpc.Push` and `…Rpc.Pull` the client sent, with what answered it. On ws a request is
 * answered on the connection it left on (frames with its `requestId`), on http by its own exchange's reply array.
 */
const entryOf = ({ seqNum, name, args }) => `e${seqNum} ${name} ${args.id}`

const failureOf = (exit) => (exit.cause?._tag === 'Fail' ? exit.cause.error : { _tag: exit.cause?._tag })

/** Every `…Rpc.Push` and `…Rpc.Pull` request with its answer frames, in the order they were sent. */
const requestsOf = (wire) => {
  const requests = []
  const byConnection = new Map()
  for (const { connection, frame, at } of wire.sent) {
    if (frame._tag !== 'Request' || !/\.(Push|Pull)$/.test(frame.tag)) continue
    const request = { via: `connection ${connection}`, at, frame, answers: [] }
    byConnection.set(`${connection} ${frame.id}`, request)
    requests.push(request)
  }
  for (const { connection, frame } of wire.received) {
    byConnection.get(`${connection} ${frame.requestId}`)?.answers.push(frame)
  }
  for (const [index, { request: frame, replies, status, error, sentAt }] of wire.exchanges.entries()) {
    if (frame?._tag !== 'Request' || !/\.(Push|Pull)$/.test(frame.tag)) continue
    const answers = Array.isArray(replies) ? replies : []
    requests.push({ via: `exchange ${index}`, at: sentAt, frame, answers, status, error })
  }
  return requests.sort((a, b) => (a.at ?? 0) - (b.at ?? 0))
}

/**
 * How a request ended: `ok`; the failure's `_tag` (and its fields as `failure`); `open` (a live ws pull, streaming
 * until its connection ended); `in flight` (an http exchange still on its way when the log was read: a client polls
 * until it is shut down); or, when nothing answered, `no answer` (with what `fetch` threw) or `HTTP <status>`.
 */
const outcomeOf = ({ frame, answers, status, error, via }) => {
  const exit = answers.find((answer) => answer?._tag === 'Exit')?.exit
  if (exit !== undefined) {
    if (exit._tag === 'Success') return { outcome: 'ok' }
    const failure = failureOf(exit)
    return { outcome: failure._tag, failure }
  }
  if (error !== undefined) return { outcome: `no answer (${error})` }
  if (status !== undefined && status !== 200) return { outcome: `HTTP ${status}` }
  if (status === undefined && via.startsWith('exchange')) return { outcome: 'in flight' }
  return { outcome: frame.payload?.live ? 'open' : 'no answer' }
}

/**
 * Each push as `{ via, at, push: true, parent, entries, outcome }` and each pull as
 * `{ via, at, pull: true, live, cursor, entries, breaks, outcome }`, in send order. `entries` are the events the
 * push carried or the pull's answer delivered, as `e<seqNum> <name> <todo id>`; a pull's `breaks` say where its
 * answer did not continue from its cursor seqNum by seqNum (a gap or a repeat no client may be sent).
 */
export const requestSummary = (wire) =>
  requestsOf(wire).map((request) => {
    const { frame, answers, via, at } = request
    const ended = outcomeOf(request)
    if (frame.tag.endsWith('.Push')) {
      const { batch } = frame.payload
      return { via, at, push: true, parent: batch[0]?.parentSeqNum, entries: batch.map(entryOf), ...ended }
    }
    const cursorOption = frame.payload.cursor
    const cursor = cursorOption?._tag === 'Some' ? cursorOption.value.eventSequenceNumber : 0
    const events = answers
      .filter((answer) => answer?._tag === 'Chunk')
      .flatMap((answer) => answer.values.flatMap(({ batch }) => batch.map(({ eventEncoded }) => eventEncoded)))
    const breaks = []
    events.reduce((previous, { seqNum }) => {
      if (seqNum !== previous + 1) breaks.push(`e${seqNum} after e${previous}`)
      return seqNum
    }, cursor)
    return { via, at, pull: true, live: frame.payload.live ?? null, cursor, entries: events.map(entryOf), breaks, ...ended }
  })

/** The requests of a summary that nothing answered: pushes without an `Exit`, exchanges without an HTTP 200. */
export const unansweredRequests = (summary) =>
  summary.filter(({ outcome }) => outcome.startsWith('no answer') || outcome.startsWith('HTTP'))

/**
 * The ws connections the client closed itself while they were open (its ping watchdog closes a connection on
 * which it handled no frame for 10 s), each with whether it sent a `…Rpc.Pull` on a later connection and whether
 * the server answered it anything there (a `Pong` at least). A client that closed a connection and then only pings
 * the server on the next one has left its live pull behind for good.
 */
export const selfClosedConnections = (wire) =>
  wire.selfCloses.map((connection) => ({
    connection,
    pulledLater: wire.sent.some(
      (sent) => sent.connection > connection && sent.frame._tag === 'Request' && sent.frame.tag.endsWith('.Pull'),
    ),
    answeredLater: wire.received.some((received) => received.connection > connection),
  }))
