/** Readings of a client's wire log (see `client-runtime.mjs`) that scenarios report. */
import { receivedMessages, sentMessages } from './client-runtime.mjs'

const failureOf = (exit) => (exit.cause._tag === 'Fail' ? exit.cause.error : { _tag: exit.cause._tag })

/** The typed errors the server answered this client's requests with, by `_tag`. */
export const failuresByTag = (wire) => {
  const counts = {}
  for (const { exit } of receivedMessages(wire, 'Exit')) {
    if (exit._tag !== 'Failure') continue
    const { _tag } = failureOf(exit)
    counts[_tag] = (counts[_tag] ?? 0) + 1
  }
  return counts
}

/** The failures the server answered this client's `…Rpc.Push` requests with, in order. */
export const pushFailures = (wire) => {
  const pushIds = new Set(sentMessages(wire, 'Request').filter(({ tag }) => tag.endsWith('.Push')).map(({ id }) => id))
  return receivedMessages(wire, 'Exit')
    .filter(({ requestId, exit }) => pushIds.has(requestId) && exit._tag === 'Failure')
    .map(({ exit }) => failureOf(exit))
}

/** The pages (`Chunk` values) that answered the client's first `…Rpc.Pull`: events and `pageInfo` of each. */
export const firstPullPages = (wire) => {
  const [firstPull] = sentMessages(wire, 'Request').filter(({ tag }) => tag.endsWith('.Pull'))
  if (firstPull === undefined) return []
  return receivedMessages(wire, 'Chunk')
    .filter(({ requestId }) => requestId === firstPull.id)
    .flatMap(({ values }) => values)
    .map(({ batch, pageInfo }) => ({ events: batch.length, pageInfo }))
}

/**
 * Where a pull stream of this client skipped or repeated events: for each pull (per ws connection and request id,
 * or per http exchange), each Chunk's events must continue the previous ones, seqNum by seqNum. An empty list is
 * what the server owes every subscriber (never a gap, never a duplicate), whatever the client does with them.
 */
export const pullStreamBreaks = (wire) => {
  const streams = [
    ...wire.received.map(({ connection, frame }) => ({ stream: `connection ${connection}`, frame })),
    ...wire.exchanges.flatMap(({ replies }, index) =>
      (Array.isArray(replies) ? replies : []).map((frame) => ({ stream: `exchange ${index}`, frame })),
    ),
  ]
  const last = new Map()
  const breaks = []
  for (const { stream, frame } of streams) {
    if (frame?._tag !== 'Chunk') continue
    const key = `${stream} request ${frame.requestId}`
    for (const { batch } of frame.values) {
      for (const { eventEncoded } of batch) {
        const previous = last.get(key)
        if (previous !== undefined && eventEncoded.seqNum !== previous + 1) {
          breaks.push(`${key}: e${eventEncoded.seqNum} after e${previous}`)
        }
        last.set(key, eventEncoded.seqNum)
      }
    }
  }
  return breaks
}

const eventEntry = ({ seqNum, name, args }) => `e${seqNum} ${name} ${args.id}`

/**
 * The events of this client's pushes that the server answered with success, as `readEventlog` lists them
 * (`e<seqNum> <name> <todo id>`), in the order of the answers. Every one of them is the server's to keep.
 */
export const acknowledgedEvents = (wire) => {
  const pushes = new Map()
  for (const { connection, frame } of wire.sent) {
    if (frame._tag === 'Request' && frame.tag.endsWith('.Push')) pushes.set(`${connection} ${frame.id}`, frame)
  }
  const answered = [
    ...wire.received.map(({ connection, frame }) => ({ push: pushes.get(`${connection} ${frame.requestId}`), frame })),
    ...wire.exchanges.flatMap(({ request, replies }) =>
      (Array.isArray(replies) ? replies : []).map((frame) => ({ push: request, frame })),
    ),
  ]
  return answered
    .filter(({ push, frame }) => frame?._tag === 'Exit' && frame.exit._tag === 'Success' && push?.tag?.endsWith('.Push'))
    .flatMap(({ push }) => push.payload.batch.map(eventEntry))
}

/**
 * The client's own events it pushed again at a later seqNum after the server answered a push of them with
 * `ServerAheadError`: the rebases its wire log shows, as `<name> <todo id>: e<old> -> e<new>`, in push order.
 */
export const rebasedEvents = (wire) => {
  const answers = new Map()
  for (const { connection, frame } of wire.received) {
    if (frame?._tag === 'Exit') answers.set(`${connection} ${frame.requestId}`, frame.exit)
  }
  const pushes = [
    ...wire.sent
      .filter(({ frame }) => frame._tag === 'Request' && frame.tag.endsWith('.Push'))
      .map(({ connection, frame }) => ({ push: frame, exit: answers.get(`${connection} ${frame.id}`) })),
    ...wire.exchanges
      .filter(({ request }) => request?._tag === 'Request' && request.tag.endsWith('.Push'))
      .map(({ request, replies }) => ({
        push: request,
        exit: (Array.isArray(replies) ? replies : []).find((reply) => reply?._tag === 'Exit')?.exit,
      })),
  ]
  const rejectedAt = new Map()
  const rebased = []
  for (const { push, exit } of pushes) {
    const serverAhead = exit?._tag === 'Failure' && failureOf(exit)._tag === 'ServerAheadError'
    for (const { seqNum, name, args } of push.payload.batch) {
      const key = `${name} ${args.id}`
      const before = rejectedAt.get(key)
      if (before !== undefined && seqNum > before) {
        rebased.push(`${key}: e${before} -> e${seqNum}`)
        rejectedAt.delete(key)
      }
      if (serverAhead) rejectedAt.set(key, seqNum)
    }
  }
  return rebased
}

/**
 * The ws connections this client closed itself although the server had answered the last `Ping` it sent there,
 * each with whether the client sent a `…Rpc.Pull` on a later connection. A 0.4.0 client closes its socket when
 * it has not handled a frame for 10 s (its ping watchdog), which a busy client reaches even though frames keep
 * arriving; the live pull it had open is then never answered on the next connection unless it asks again.
 */
export const selfClosedAfterAnsweredPing = (wire) =>
  wire.selfCloses.flatMap((connection) => {
    const pings = wire.sent.filter((sent) => sent.connection === connection && sent.frame._tag === 'Ping')
    const lastPing = pings.at(-1)
    const answered =
      lastPing !== undefined &&
      wire.received
        .slice(lastPing.answeredFrom)
        .some((received) => received.connection === connection && received.frame._tag === 'Pong')
    if (!answered) return []
    const pulledLater = wire.sent.some(
      (sent) => sent.connection > connection && sent.frame._tag === 'Request' && sent.frame.tag.endsWith('.Pull'),
    )
    return [{ connection, pulledLater }]
  })
